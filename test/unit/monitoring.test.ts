// The monitoring bundle (deploy/components/monitoring: PrometheusRule + Grafana dashboard, and the
// chart's generated copies) uses only metrics vmmem exports: every metric name in every PromQL
// expression must be registered by src/controller/metrics.ts (histograms with _bucket/_count/_sum).
// Also: each alert has severity, summary, description and a runbook anchor in docs/operations.md,
// and docs/operations.md describes each dashboard panel by its title.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Metrics } from '../../src/controller/metrics.ts';

const root = join(import.meta.dirname, '..', '..');
const dir = join(root, 'deploy', 'components', 'monitoring');
const operations = readFileSync(join(root, 'docs', 'operations.md'), 'utf8');

interface Rule { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const rules = (parse(readFileSync(join(dir, 'prometheusrule.yaml'), 'utf8')) as { spec: { groups: { rules: Rule[] }[] } }).spec.groups.flatMap((g) => g.rules);
interface Panel { title: string; description?: string; targets?: { expr: string }[] }
const dashboard = JSON.parse(readFileSync(join(dir, 'vmmem-dashboard.json'), 'utf8')) as { panels: Panel[]; templating: { list: { query?: unknown }[] } };

const PROMQL_WORDS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset',
  'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'histogram_quantile', 'clamp_min', 'clamp_max', 'abs',
  'absent', 'absent_over_time', 'label_values', 'vector', 'scalar', 'time', 'max_over_time', 'min_over_time', 'avg_over_time',
]);

/** Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges and grouping clauses. */
function metricNames(expr: string): string[] {
  const stripped = expr
    // label_values(<selector>, <label>): the second argument is a label name.
    .replace(/label_values\(([^,]*),[^)]*\)/g, '$1')
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\$[A-Za-z_]+/g, '');
  return [...stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)].map((m) => m[0]).filter((w) => !PROMQL_WORDS.has(w) && !/^\d/.test(w));
}

const exported = await (async () => {
  const m = new Metrics();
  const json = await m.registry.getMetricsAsJSON();
  const names = new Set<string>();
  for (const metric of json) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const s of ['_bucket', '_count', '_sum']) names.add(metric.name + s);
    if (String(metric.type) === 'summary') for (const s of ['_count', '_sum']) names.add(metric.name + s);
  }
  return names;
})();

test('the metric-name extractor finds names and skips functions, labels and strings', () => {
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (name, le) (rate(workqueue_queue_duration_seconds_bucket{name=~"a|b"}[5m]))) > 60'), ['workqueue_queue_duration_seconds_bucket']);
  assert.deepEqual(metricNames('max(vmmem_vms_managed{state="Stalled"}) / clamp_min(x_total, 1)'), ['vmmem_vms_managed', 'x_total']);
});

test('every metric the PrometheusRule and the dashboard use is exported by vmmem', () => {
  const used = new Map<string, string>();
  for (const r of rules) for (const n of metricNames(r.expr)) used.set(n, `alert ${r.alert}`);
  for (const p of dashboard.panels) for (const t of p.targets ?? []) for (const n of metricNames(t.expr)) used.set(n, `panel "${p.title}"`);
  for (const v of dashboard.templating.list) if (typeof v.query === 'string' && v.query.startsWith('label_values(')) for (const n of metricNames(v.query)) used.set(n, 'template variable');
  assert.ok(used.size >= 12, `only ${used.size} metric names found`);
  const missing = [...used].filter(([n]) => !exported.has(n)).map(([n, where]) => `${n} (${where})`);
  assert.deepEqual(missing, [], 'metrics used but not exported by src/controller/metrics.ts');
});

test('the alerts cover what #18 asks for, each with severity, summary, description and a runbook in docs/operations.md', () => {
  const names = rules.map((r) => r.alert);
  for (const want of ['VmmemReconcileErrors', 'VmmemVMsStalled', 'VmmemHypervisorUnreachable', 'VmmemWorkqueueBacklog', 'VmmemWorkqueueLatency', 'VmmemLeaderAbsent', 'VmmemBalloonUnresponsive']) {
    assert.ok(names.includes(want), want);
  }
  for (const r of rules) {
    assert.ok(['warning', 'critical'].includes(r.labels?.severity ?? ''), `${r.alert}: severity`);
    assert.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`);
    assert.ok(r.for, `${r.alert}: a for: duration, so one bad scrape does not page`);
    assert.match(r.annotations.description, new RegExp(`docs/operations\\.md#${r.alert.toLowerCase()}`), `${r.alert}: runbook link`);
    assert.match(operations, new RegExp(`^#### ${r.alert}$`, 'm'), `docs/operations.md has a "#### ${r.alert}" section`);
  }
});

test('docs/operations.md describes every dashboard panel', () => {
  for (const p of dashboard.panels) {
    assert.ok(p.description, `panel "${p.title}" has a description`);
    assert.ok(operations.includes(`**${p.title}**`), `docs/operations.md describes panel "${p.title}"`);
  }
});

test("the chart's copies are the generated ones (npm run generate)", () => {
  const chart = join(root, 'charts', 'vmmem', 'files');
  assert.equal(readFileSync(join(chart, 'vmmem-dashboard.json'), 'utf8'), readFileSync(join(dir, 'vmmem-dashboard.json'), 'utf8'));
  const groups = (parse(readFileSync(join(chart, 'prometheusrule-groups.yaml'), 'utf8')) as { groups: unknown }).groups;
  assert.deepEqual(groups, (parse(readFileSync(join(dir, 'prometheusrule.yaml'), 'utf8')) as { spec: { groups: unknown } }).spec.groups);
});

test('every controller/name matcher selects vmmem’s controllers in single and sharded mode (Prometheus anchors =~)', () => {
  const exprs = [...rules.map((r) => r.expr), ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))];
  const matchers = exprs.flatMap((e) => [...e.matchAll(/\b(controller|name)=~"((?:[^"\\]|\\.)*)"/g)].map((m) => (m[2] ?? '').replace(/\\\\/g, '\\')));
  assert.ok(matchers.length >= 5, `found ${matchers.length} matchers`);
  for (const pattern of matchers) {
    const anchored = new RegExp(`^(?:${pattern})$`);
    // The names src/controller/operator.ts gives its controllers, alone and per shard (src/cli/sharded.ts).
    for (const name of ['virtualmachinememory', 'hypervisor', 'virtualmachinememory-shard-0', 'hypervisor-shard-11']) assert.ok(anchored.test(name), `${pattern} does not match ${name}`);
    assert.ok(!anchored.test('othercontroller'), `${pattern} matches another operator's controller`);
  }
});

// The gauges a replica computes from the objects it reconciles (src/controller/metrics.ts setInventory):
// found by giving a Metrics an inventory and seeing which series appear, so a new inventory gauge is
// covered without editing this list. Each replica exports only its share (its shards; a standby none),
// so max/min/avg over replicas undercount in sharded mode: only sum (or count) adds the shares up.
const inventoryGauges = await (async () => {
  const seriesOf = async (m: Metrics) => new Set((await m.registry.getMetricsAsJSON()).filter((x) => x.values.length > 0).map((x) => x.name));
  const without = await seriesOf(new Metrics());
  const m = new Metrics();
  const cond = (type: string, status: string, reason: string) => ({ type, status, reason, message: '', lastTransitionTime: '2026-12-04T00:00:00Z' });
  const hv = { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { namespace: 'vms', name: 'kvm' }, spec: { uri: 'qemu:///system' }, status: { conditions: [cond('Connected', 'True', 'Connected')] } };
  const vmm = {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { namespace: 'vms', name: 'web' },
    spec: { hypervisorRef: { name: 'kvm' }, vm: { name: 'web' }, maxMemory: '4Gi' },
    status: { observed: { maxMemory: '4Gi', memory: '4Gi', actualMemory: '4Gi' }, conditions: [cond('Ready', 'True', 'Converged'), cond('Stalled', 'True', 'Unsupported')] },
  };
  m.setInventory({ vmms: () => [vmm], hypervisors: () => [hv] });
  const withInventory = await seriesOf(m);
  return [...withInventory].filter((n) => !without.has(n));
})();

/** Aggregations applied directly to `metric` in `expr`: "max" for `max by (state) (vmmem_vms_managed)` or `max(vmmem_vms_managed{...})`. */
function aggregationsOf(expr: string, metric: string): string[] {
  const re = new RegExp(`\\b(sum|min|max|avg|count|topk|bottomk|quantile|group)\\s*(?:(?:by|without)\\s*\\([^)]*\\)\\s*)?\\(\\s*${metric}\\b`, 'g');
  return [...expr.matchAll(re)].map((m) => m[1] as string);
}

test('inventory gauges (one share per replica in sharded mode) are summed over replicas, never max()ed', () => {
  assert.deepEqual([...inventoryGauges].sort(), ['vmmem_hypervisor_connected', 'vmmem_memory_managed_bytes', 'vmmem_vm_conditions', 'vmmem_vms_managed']);
  assert.deepEqual(aggregationsOf('max by (state) (vmmem_vms_managed)', 'vmmem_vms_managed'), ['max'], 'the checker sees max');
  assert.deepEqual(aggregationsOf('sum(vmmem_vms_managed{state="Stalled"}) > 0', 'vmmem_vms_managed'), ['sum']);
  const exprs = [...rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })), ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr })))];
  const wrong: string[] = [];
  let checked = 0;
  for (const { where, expr } of exprs) {
    for (const g of inventoryGauges) {
      if (!new RegExp(`\\b${g}\\b`).test(expr)) continue;
      checked++;
      const aggs = aggregationsOf(expr, g);
      if (aggs.length === 0 || aggs.some((a) => a !== 'sum' && a !== 'count')) wrong.push(`${where}: ${expr}`);
    }
  }
  assert.ok(checked >= 4, `only ${checked} uses of inventory gauges found`);
  assert.deepEqual(wrong, [], 'each replica exports only its shards\' share: aggregate with sum over replicas');
});
