/**
 * The command table: every `vmmem` subcommand and flag, with its default and
 * allowed values. It drives the parser (src/cli/args.ts), each command's
 * `--help`, and docs/cli.md (scripts/generate-cli-doc.ts; a test checks the
 * file equals the rendering), so help, parser and docs cannot disagree.
 */

export interface FlagSpec {
  name: string;
  short?: string;
  type: 'string' | 'boolean';
  multiple?: boolean;
  /** Shown in help as `<placeholder>`. */
  placeholder?: string;
  /** Default as the user would type it; undefined: none. */
  default?: string;
  /** Allowed values (anything else is a usage error, exit 2). */
  values?: readonly string[];
  description: string;
  /** Old names still accepted (not shown in the flag column, mentioned in the description). */
  aliases?: readonly string[];
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  description: string;
  flags: readonly FlagSpec[];
  exitCodes: readonly (readonly [number, string])[];
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const LOG_FORMATS = ['console', 'json'] as const;

const filenameFlag = (what: string): FlagSpec => ({
  name: 'filename',
  short: 'f',
  type: 'string',
  multiple: true,
  placeholder: 'file|dir|-',
  aliases: ['file'],
  description: `${what}: a file, a directory (read recursively: *.yaml, *.yml, *.json) or - for stdin; repeatable. Required. (--file is accepted too.)`,
});

const logFlags: readonly FlagSpec[] = [
  { name: 'log-level', type: 'string', values: LOG_LEVELS, placeholder: 'level', description: 'least severe log level written; the default depends on the command and mode (see below)' },
  {
    name: 'log-format',
    type: 'string',
    values: LOG_FORMATS,
    placeholder: 'format',
    description: 'console: one readable line per log entry (the default on a terminal); json: one JSON object per line (the default otherwise, what log collectors read)',
  },
];

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'validate',
    summary: 'check manifests offline, with file:line for every problem',
    usage: 'vmmem validate -f <file|dir|->...',
    description:
      'Checks every vmmem.io object in the manifests against the same schema the CRDs are generated from, without a cluster or a hypervisor. ' +
      'Prints one `<file>:<line>: <Kind>/<name>: <field>: <message>` line per problem on stdout, a summary on stderr. ' +
      'Two objects with the same kind, namespace and name are a problem (`duplicate`). Kinds vmmem does not own are ignored.',
    flags: [filenameFlag('manifests to check')],
    exitCodes: [
      [0, 'every vmmem object is valid'],
      [1, 'problems found (printed), including unreadable files, YAML errors, unknown apiVersions and duplicates'],
      [2, 'usage error (unknown flag, missing -f, no such path)'],
    ],
  },
  {
    name: 'plan',
    summary: 'show what vmmem would change, changing nothing',
    usage: 'vmmem plan -f <file|dir|->... [--hypervisor <uri> | --observed <file|dir>] [-o table|yaml|json|markdown] [--detailed-exitcode]',
    description:
      'For each VirtualMachineMemory, observes its VM (read-only) and prints the ordered steps and, per field, the verdict (Applied, RestartRequired, AwaitingPowerOff, Unsupported, Unsafe, Invalid), ' +
      'with the same rules as the operator: guest-aware shrink (the Hypervisor\'s spec.guestHeadroom) and host capacity (VMMs on one host checked against each other). ' +
      'Meant for a pull-request check: -o markdown is a table a CI bot can post (every text from manifests or hypervisors escaped), ' +
      'and --observed plans from a state saved earlier (`vmmem run --once -o yaml`, a --status-file, or `kubectl get vmm,hypervisors -A -o yaml`) without connecting to anything, so the check needs no credentials. ' +
      'A saved state that cannot be read, is invalid or was written by an older vmmem plans nothing (exit 1); a VMM it has no observation of, or whose spec now names another VM or Hypervisor, is an error row (exit 1). ' +
      'Invalid manifests are reported like `validate` does, on stderr.',
    flags: [
      filenameFlag('manifests to plan'),
      { name: 'hypervisor', type: 'string', placeholder: 'uri', description: "observe every VM on this hypervisor instead of the one each VMM's hypervisorRef names" },
      {
        name: 'observed',
        type: 'string',
        placeholder: 'file|dir',
        description: 'plan from this saved state (objects with status) instead of the hypervisors: no connection, no credentials; Hypervisors missing from -f are taken from it',
      },
      { name: 'output', short: 'o', type: 'string', values: ['table', 'yaml', 'json', 'markdown'], default: 'table', placeholder: 'format', description: 'output format (markdown: a table for a pull-request comment)' },
      { name: 'detailed-exitcode', type: 'boolean', description: "terraform's exit codes: 0 nothing would change, 2 changes to send, 3 something Stalled, 1 an error" },
    ],
    exitCodes: [
      [0, 'plan shown; every field can be applied (now or after a restart / power-off). With --detailed-exitcode: and nothing would be sent'],
      [1, 'a VM could not be observed, the saved state (--observed) is unusable or has no observation of a VMM, or the manifests are invalid'],
      [2, 'usage error. With --detailed-exitcode also: the plan has changes to send (a usage error prints no plan)'],
      [3, 'some field is Unsupported, Unsafe or Invalid (Stalled: its owner must change the spec)'],
    ],
  },
  {
    name: 'run',
    summary: 'run the operator (against Kubernetes, or standalone over manifests)',
    usage: 'vmmem run [--kubeconfig <path>] [--context <name>] [-n <namespace>] | vmmem run --manifests <dir> [--once [-o table|yaml|json] [--timeout <duration>]]',
    description:
      'Without --manifests: the operator against a Kubernetes cluster (in-cluster config, --kubeconfig, or $KUBECONFIG). ' +
      'With --manifests: standalone mode over a directory of manifests (Hypervisors, VirtualMachineMemories, Secrets) instead of the API server; status lives in memory, ' +
      'Events are printed on stderr (readable lines on a terminal, JSON logs otherwise) and, with --status-file, every object with its status is written to a file. ' +
      'With --once: reconcile until nothing more can be done now, print every object with its status, exit. ' +
      'Log level default: info, or warn with --once.',
    flags: [
      { name: 'kubeconfig', type: 'string', placeholder: 'path', description: 'kubeconfig file (default: $KUBECONFIG, then the in-cluster ServiceAccount)' },
      { name: 'context', type: 'string', placeholder: 'name', description: "kubeconfig context to use (default: the kubeconfig's current-context)" },
      { name: 'namespace', short: 'n', type: 'string', placeholder: 'namespace', description: 'watch only this namespace (default: all namespaces)' },
      { name: 'manifests', type: 'string', multiple: true, placeholder: 'file|dir', description: 'standalone mode: read objects from these manifests instead of Kubernetes; repeatable' },
      { name: 'once', type: 'boolean', description: 'standalone: reconcile until quiet, print every object, exit (needs --manifests)' },
      { name: 'output', short: 'o', type: 'string', values: ['table', 'yaml', 'json'], default: 'yaml', placeholder: 'format', description: 'with --once: output format (table: the demo\'s columns)' },
      { name: 'timeout', type: 'string', default: '5m', placeholder: 'duration', description: 'with --once: give up waiting (balloon settling, virtio-mem plug) after this long, e.g. 90s, 5m' },
      { name: 'status-file', type: 'string', placeholder: 'path', description: 'standalone: write every object with its status (a v1 List, YAML) to this file whenever it changes; must not be one of the manifests' },
      {
        name: 'events',
        type: 'string',
        values: ['auto', 'console', 'json', 'none'],
        default: 'auto',
        placeholder: 'format',
        description: 'standalone: how Events are shown on stderr; auto: readable lines on a terminal, JSON log entries otherwise',
      },
      { name: 'concurrency', type: 'string', default: '4', placeholder: 'n', description: 'objects reconciled in parallel (1-256)' },
      { name: 'leader-elect', type: 'boolean', description: 'cluster: take a Lease before reconciling, so only one replica works' },
      { name: 'leader-election-namespace', type: 'string', placeholder: 'namespace', description: "cluster: the Lease's namespace (default: $POD_NAMESPACE, the kubeconfig's namespace, then vmmem-system)" },
      { name: 'leader-election-id', type: 'string', default: 'vmmem-leader', placeholder: 'name', description: "cluster: the Lease's name" },
      { name: 'leader-election-lease-duration', type: 'string', placeholder: 'duration', description: 'cluster: how long a Lease holds without renewal (default 15s; also each shard Lease with --shards)' },
      { name: 'leader-election-renew-deadline', type: 'string', placeholder: 'duration', description: 'cluster: a holder that cannot renew for this long stops working (default 10s; less than the lease duration)' },
      { name: 'leader-election-retry-period', type: 'string', placeholder: 'duration', description: 'cluster: how often Leases are tried and renewed (default 2s)' },
      { name: 'shards', type: 'string', placeholder: 'n', description: 'cluster: sharded mode, Hypervisors (with their VMMs) split into n shards (1-1024) held by the live replicas through one Lease each (docs/operations.md "Sharding"); replaces --leader-elect' },
      { name: 'identity', type: 'string', placeholder: 'name', description: 'cluster: this replica\'s identity in Leases and status.shardOwner (default: $POD_NAME or the host name, plus a random suffix)' },
      { name: 'metrics-bind-address', type: 'string', placeholder: 'addr', description: 'Prometheus /metrics listen address; 0 turns it off (default: :8080 in cluster mode, 0 standalone)' },
      {
        name: 'metrics-secure',
        type: 'string',
        values: ['true', 'false'],
        default: 'false',
        placeholder: 'bool',
        description:
          'cluster: serve /metrics over HTTPS and let a scrape through only with a bearer token the API server authenticates (TokenReview) and allows to get /metrics (SubjectAccessReview): 401 without, 403 if not allowed. deploy/ and the Helm chart set true (docs/kubernetes.md)',
      },
      { name: 'metrics-cert-dir', type: 'string', placeholder: 'dir', description: 'with --metrics-secure=true: tls.crt and tls.key for the metrics listener (e.g. a mounted kubernetes.io/tls Secret), re-read when they change; default: a self-signed certificate made at start' },
      { name: 'health-probe-bind-address', type: 'string', placeholder: 'addr', description: '/healthz and /readyz listen address; 0 turns it off (default: :8081 in cluster mode, 0 standalone)' },
      {
        name: 'allow-sim-hypervisors',
        type: 'boolean',
        description: 'cluster: accept sim: Hypervisors (test clusters, benchmarks); refused otherwise, since the simulator is not a production transport (standalone mode always accepts them)',
      },
      {
        name: 'hypervisor-allow',
        type: 'string',
        multiple: true,
        placeholder: 'rules',
        description: 'restrict which hosts/CIDRs/ports Hypervisors may name, comma-separated (docs/security.md); anything else is refused before any connection (default: no restriction)',
      },
      ...logFlags,
    ],
    exitCodes: [
      [0, 'run: stopped by SIGTERM/SIGINT. --once: every object Ready, or waiting only on a restart / power-off'],
      [1, 'run: a fatal error (no kubeconfig, lost leadership). --once: some object failed (not Ready for an operational reason), a manifest could not be read or parsed, a duplicate object, or --timeout passed'],
      [2, 'usage error'],
      [3, '--once: some object is Stalled (its spec needs a change by its owner)'],
    ],
  },
  {
    name: 'get',
    summary: 'show a status file written by `run --status-file` as a table',
    usage: 'vmmem get -f <status-file> [-o table|yaml|json]',
    description: 'Reads the file a standalone `vmmem run --status-file` writes and prints it, like `kubectl get` does for the cluster.',
    flags: [
      { name: 'filename', short: 'f', type: 'string', placeholder: 'path', description: 'the status file (required)' },
      { name: 'output', short: 'o', type: 'string', values: ['table', 'yaml', 'json'], default: 'table', placeholder: 'format', description: 'output format' },
    ],
    exitCodes: [
      [0, 'shown'],
      [1, 'the file cannot be read or is not a status file'],
      [2, 'usage error'],
    ],
  },
  {
    name: 'demo',
    summary: 'the operator on the examples and three simulated hosts (what `npm start` runs)',
    usage: 'vmmem demo [--watch] [--manifests <dir>]',
    description: 'Standalone mode over examples/demo against simulated QEMU/KVM, Xen and ESX hosts: shows Events and status live, then restarts one VM and powers another off as an admin would.',
    flags: [
      { name: 'manifests', type: 'string', placeholder: 'dir', default: 'examples/demo', description: 'manifests to run the demo over' },
      { name: 'watch', type: 'boolean', description: 'keep running and apply edits to the manifests until Ctrl-C' },
      { name: 'log-level', type: 'string', values: LOG_LEVELS, default: 'silent', placeholder: 'level', description: "operator log level (the demo shows Events, not logs)" },
    ],
    exitCodes: [
      [0, 'every VMM Ready, waiting on an admin, or stalled as the example intends'],
      [1, 'something failed'],
      [2, 'usage error'],
    ],
  },
  {
    name: 'version',
    summary: 'print the version',
    usage: 'vmmem version   (or vmmem --version)',
    description: 'Prints the vmmem version and the API version it serves.',
    flags: [],
    exitCodes: [[0, 'always']],
  },
];

export const HELP_FLAG: FlagSpec = { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' };

export function commandNamed(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}
