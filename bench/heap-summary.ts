// Where a V8 heap snapshot's memory is: the largest subtrees of the dominator tree (what would be
// freed if that object went: "retained size", as Chrome DevTools' Retainers/Dominators views) and
// self size by constructor. Used on the snapshots `bench scale --heap-snapshots <dir>` writes.
//
//   node --max-old-space-size=6000 bench/heap-summary.ts <file.heapsnapshot> [--depth 6] [--min-pct 1]
//
// Snapshot format: https://v8.dev/docs/heap-snapshot-format (nodes/edges as flat integer arrays
// described by snapshot.meta). Dominators: Cooper, Harvey & Kennedy, "A Simple, Fast Dominance
// Algorithm" (iterative over reverse postorder), on the graph without weak edges.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  snapshot: {
    meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] };
    node_count: number;
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface HeapSummary {
  totalBytes: number;
  nodes: number;
  /** Dominator-tree lines, indented by depth: retained MiB, % of total, edge name, class. */
  tree: string[];
  /** Self size by class (type for non-objects), largest first. */
  byClass: { name: string; count: number; bytes: number }[];
}

export function summarize(file: string, depth = 6, minPct = 1): HeapSummary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const { meta } = snap.snapshot;
  const NF = meta.node_fields.length;
  const EF = meta.edge_fields.length;
  const nType = meta.node_fields.indexOf('type');
  const nName = meta.node_fields.indexOf('name');
  const nSize = meta.node_fields.indexOf('self_size');
  const nEdges = meta.node_fields.indexOf('edge_count');
  const eType = meta.edge_fields.indexOf('type');
  const eName = meta.edge_fields.indexOf('name_or_index');
  const eTo = meta.edge_fields.indexOf('to_node');
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const weak = edgeTypes.indexOf('weak');
  const elementT = edgeTypes.indexOf('element');
  const hiddenT = edgeTypes.indexOf('hidden');
  const { nodes, edges, strings } = snap;
  const n = nodes.length / NF;

  // First edge of each node (edges are stored node by node).
  const firstEdge = new Uint32Array(n + 1);
  for (let i = 0, e = 0; i < n; i++) {
    firstEdge[i] = e;
    e += nodes[i * NF + nEdges]! * EF;
  }
  firstEdge[n] = edges.length;

  // Reverse postorder from the root (node 0), iteratively; weak edges do not retain.
  const order = new Int32Array(n).fill(-1); // postorder index
  const post: number[] = [];
  const stack: number[] = [0];
  const cursor = new Uint32Array(n);
  const visited = new Uint8Array(n);
  visited[0] = 1;
  for (let i = 0; i < n; i++) cursor[i] = firstEdge[i]!;
  while (stack.length) {
    const v = stack[stack.length - 1]!;
    let pushed = false;
    while (cursor[v]! < firstEdge[v + 1]!) {
      const e = cursor[v]!;
      cursor[v] = e + EF;
      if (edges[e + eType] === weak) continue;
      const w = edges[e + eTo]! / NF;
      if (!visited[w]) {
        visited[w] = 1;
        stack.push(w);
        pushed = true;
        break;
      }
    }
    if (!pushed) {
      stack.pop();
      order[v] = post.length;
      post.push(v);
    }
  }

  // Predecessors (reachable, non-weak) in CSR form.
  const predCount = new Uint32Array(n + 1);
  for (let v = 0; v < n; v++) {
    if (!visited[v]) continue;
    for (let e = firstEdge[v]!; e < firstEdge[v + 1]!; e += EF) if (edges[e + eType] !== weak) predCount[edges[e + eTo]! / NF]!++;
  }
  const predStart = new Uint32Array(n + 1);
  for (let v = 0; v < n; v++) predStart[v + 1] = predStart[v]! + predCount[v]!;
  const preds = new Uint32Array(predStart[n]!);
  const fill = predStart.slice();
  for (let v = 0; v < n; v++) {
    if (!visited[v]) continue;
    for (let e = firstEdge[v]!; e < firstEdge[v + 1]!; e += EF) if (edges[e + eType] !== weak) preds[fill[edges[e + eTo]! / NF]!++] = v;
  }

  const idom = new Int32Array(n).fill(-1);
  idom[0] = 0;
  const intersect = (a: number, b: number): number => {
    while (a !== b) {
      while (order[a]! < order[b]!) a = idom[a]!;
      while (order[b]! < order[a]!) b = idom[b]!;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = post.length - 2; i >= 0; i--) {
      const v = post[i]!;
      let d = -1;
      for (let p = predStart[v]!; p < predStart[v + 1]!; p++) {
        const u = preds[p]!;
        if (idom[u] === -1) continue;
        d = d === -1 ? u : intersect(u, d);
      }
      if (d !== -1 && idom[v] !== d) {
        idom[v] = d;
        changed = true;
      }
    }
  }

  // Retained sizes: children before parents = postorder.
  const retained = new Float64Array(n);
  for (let v = 0; v < n; v++) retained[v] = nodes[v * NF + nSize]!;
  for (const v of post) if (v !== 0) retained[idom[v]!] = retained[idom[v]!]! + retained[v]!;
  const total = retained[0]!;

  // The edge name by which a node's dominator (or, failing that, any retainer) holds it.
  const edgeNameTo = (v: number): string => {
    let fallback = '';
    for (let p = predStart[v]!; p < predStart[v + 1]!; p++) {
      const u = preds[p]!;
      for (let e = firstEdge[u]!; e < firstEdge[u + 1]!; e += EF) {
        if (edges[e + eTo]! / NF !== v) continue;
        const t = edges[e + eType]!;
        const name = t === elementT || t === hiddenT ? `[${edges[e + eName]}]` : String(strings[edges[e + eName]!]);
        if (u === idom[v]) return name;
        fallback ||= name;
      }
    }
    return fallback;
  };
  const label = (v: number): string => {
    const type = nodeTypes[nodes[v * NF + nType]!]!;
    const name = strings[nodes[v * NF + nName]!]!;
    return type === 'object' || type === 'closure' ? name.slice(0, 60) : `(${type}) ${name.slice(0, 40).replace(/\s+/g, ' ')}`;
  };

  const children = new Map<number, number[]>();
  for (const v of post) {
    if (v === 0) continue;
    const d = idom[v]!;
    if (retained[v]! < (total * minPct) / 100) continue;
    let c = children.get(d);
    if (!c) children.set(d, (c = []));
    c.push(v);
  }
  const tree: string[] = [];
  const walk = (v: number, level: number) => {
    const kids = (children.get(v) ?? []).sort((a, b) => retained[b]! - retained[a]!);
    for (const k of kids) {
      tree.push(`${'  '.repeat(level)}${(retained[k]! / 2 ** 20).toFixed(1)} MiB ${((retained[k]! / total) * 100).toFixed(1)}%  ${edgeNameTo(k)} → ${label(k)}`);
      if (level + 1 < depth) walk(k, level + 1);
    }
  };
  walk(0, 0);

  const classes = new Map<string, { count: number; bytes: number }>();
  for (let v = 0; v < n; v++) {
    if (!visited[v]) continue;
    const type = nodeTypes[nodes[v * NF + nType]!]!;
    const key = type === 'object' ? strings[nodes[v * NF + nName]!]! : `(${type})`;
    const c = classes.get(key) ?? { count: 0, bytes: 0 };
    c.count++;
    c.bytes += nodes[v * NF + nSize]!;
    classes.set(key, c);
  }
  const byClass = [...classes].map(([name, c]) => ({ name, ...c })).sort((a, b) => b.bytes - a.bytes);
  return { totalBytes: total, nodes: n, tree, byClass };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ options: { depth: { type: 'string', default: '6' }, 'min-pct': { type: 'string', default: '1' }, top: { type: 'string', default: '20' } }, allowPositionals: true });
  for (const file of positionals) {
    const s = summarize(file, Number(values.depth), Number(values['min-pct']));
    console.log(`${file}: ${(s.totalBytes / 2 ** 20).toFixed(1)} MiB reachable in ${s.nodes} nodes`);
    console.log(`dominator tree (subtrees ≥ ${values['min-pct']}% of the heap):`);
    for (const l of s.tree) console.log(`  ${l}`);
    console.log('self size by class:');
    for (const c of s.byClass.slice(0, Number(values.top))) console.log(`  ${(c.bytes / 2 ** 20).toFixed(1)} MiB  ${c.count}×  ${c.name}`);
  }
}
