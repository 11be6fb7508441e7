// The exact RBAC the Kubernetes adapter needs (docs/kubernetes.md), as data: deploy/ manifests are
// written from it and test/peer/kube/adapter.test.ts runs the whole adapter as a user bound to
// exactly these rules. Nothing more is needed; anything less breaks a documented feature.

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/**
 * The operator's rules. Bind them with a ClusterRole + ClusterRoleBinding when watching all
 * namespaces, or a Role + RoleBinding in the one namespace given by --namespace.
 */
export const OPERATOR_RULES: readonly PolicyRule[] = [
  // Informers (list + watch) and the fresh read after a status conflict (get).
  { apiGroups: ['vmmem.io'], resources: ['virtualmachinememories', 'hypervisors'], verbs: ['get', 'list', 'watch'] },
  // Status writes: JSON merge patch on the status subresource only (never PUT, never spec).
  { apiGroups: ['vmmem.io'], resources: ['virtualmachinememories/status', 'hypervisors/status'], verbs: ['patch'] },
  // events.k8s.io/v1 Events: create; patch bumps series.count of a repeated event.
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
  // Hypervisor credentials, read on demand by name (no list, no watch). Needed in every namespace
  // that has Hypervisors; a Role per such namespace is enough if you prefer to scope it tighter.
  { apiGroups: [''], resources: ['secrets'], verbs: ['get'] },
];

/** Leader election: a Role + RoleBinding in the operator's own namespace. */
export const LEADER_ELECTION_RULES: readonly PolicyRule[] = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
];

/**
 * Sharded mode (--shards, src/kube/shards.ts), Leases in the operator's own namespace: a Lease per
 * shard and one per replica (its membership). list finds the live members; delete removes our own
 * member Lease on shutdown and those of replicas gone for long.
 */
export const SHARDING_RULES: readonly PolicyRule[] = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'create', 'update', 'delete'] },
];

/**
 * Sharded mode, in every namespace watched: the shard labels on Hypervisors and VMMs (a merge
 * patch of metadata.labels only, src/kube/labeler.ts; RBAC cannot narrow patch to labels).
 */
export const SHARD_LABEL_RULES: readonly PolicyRule[] = [
  { apiGroups: ['vmmem.io'], resources: ['virtualmachinememories', 'hypervisors'], verbs: ['patch'] },
];

/**
 * The secured metrics endpoint (src/kube/metrics-auth.ts): the operator asks the API server who a
 * scraper is (TokenReview) and whether it may get /metrics (SubjectAccessReview). Both are
 * cluster-scoped create-only APIs, so a ClusterRole even in single-namespace mode; they expose no
 * object data.
 */
export const METRICS_AUTH_RULES: readonly PolicyRule[] = [
  { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
  { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
];

/** What a scraper (Prometheus' ServiceAccount) needs: bind a ClusterRole with this rule to it. */
export const METRICS_READER_RULE = { nonResourceURLs: ['/metrics'], verbs: ['get'] } as const;
