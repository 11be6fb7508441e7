/**
 * `vmmem plan -f <manifests>... [--hypervisor <uri> | --observed <saved>]
 * [-o table|yaml|json|markdown] [--detailed-exitcode]`: for each
 * VirtualMachineMemory, what vmmem would do — the ordered steps and one verdict
 * per field — changing nothing. For a GitOps pull-request check: `-o markdown`
 * is a table a bot can post, `--observed` plans from a state saved earlier
 * without connecting to anything. Exit codes: src/cli/commands.ts (plan).
 *
 * The pieces: plan-sources.ts (live hypervisor or saved state), plan-observed.ts
 * (reading a saved state), plan-report.ts (planning, capacity, exit code),
 * plan-markdown.ts (the pull-request table).
 */
import { stringify } from 'yaml';
import { HypervisorSpecSchema } from '../api/hypervisor.ts';
import type { HypervisorSpec } from '../api/hypervisor.ts';
import { VMMSpecSchema } from '../api/vmm.ts';
import { createLogger } from '../controller/log.ts';
import { expandPaths } from '../manifests/load.ts';
import { manifestProblemLines } from '../manifests/validate.ts';
import { ManifestStore } from '../standalone/store.ts';
import { UsageError } from './args.ts';
import type { ParsedValues } from './args.ts';
import type { CommandIO } from './io.ts';
import { renderMarkdown } from './plan-markdown.ts';
import { loadSavedState, SavedStateError } from './plan-observed.ts';
import type { SavedState } from './plan-observed.ts';
import { checkCapacity, describe, hasChanges, planExitCode, planVMM } from './plan-report.ts';
import type { HostFacts, Planned, PlanReport } from './plan-report.ts';
import { liveSource, savedSource } from './plan-sources.ts';
import type { ObservationSource, PlanHost } from './plan-sources.ts';

export type { PlanReport } from './plan-report.ts';

/** Flags arrive parsed and checked against the command table (src/cli/commands.ts). */
export async function planCommand(values: ParsedValues, io: CommandIO): Promise<number> {
  const output = (values.output as string | undefined) ?? 'table';
  const files = (values.filename as string[] | undefined) ?? [];
  const observedPath = values.observed as string | undefined;
  if (files.length === 0) throw new UsageError('no input: give -f <file|dir> (repeatable)');
  if (observedPath !== undefined && values.hypervisor !== undefined) throw new UsageError('--observed and --hypervisor exclude each other: a saved state is planned without any hypervisor');
  if (observedPath === '-' && files.includes('-')) throw new UsageError('stdin can be -f - or --observed -, not both');
  const override = overrideOf(values.hypervisor);
  let paths: string[];
  try {
    paths = expandPaths(files);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let saved: SavedState | undefined;
  if (observedPath !== undefined) {
    // Read and checked before anything else: a bad saved state plans nothing.
    try {
      saved = loadSavedState(observedPath);
    } catch (err) {
      if (err instanceof SavedStateError) {
        for (const line of err.lines) io.err(`vmmem plan: ${line}`);
        return 1;
      }
      throw new UsageError(`--observed: ${(err as Error).message}`);
    }
  }
  // Invalid manifests are reported like `vmmem validate` does, and not planned.
  const invalid = manifestProblemLines(paths).lines;
  for (const line of invalid) io.err(line);

  const log = createLogger({ level: 'warn', name: 'vmmem', stream: process.stderr });
  const store = new ManifestStore(files, { log, watch: false });
  await store.start({ onChange: () => undefined });
  let reports: PlanReport[];
  const source = saved ? savedSource(saved) : await liveSource(store, log);
  try {
    reports = await planAll(store, source, override, saved);
  } finally {
    await source.close();
    await store.stop();
  }
  if (output === 'json') io.out(JSON.stringify(reports, null, 2));
  else if (output === 'yaml') io.out(stringify(reports, { lineWidth: 0 }).trimEnd());
  else if (output === 'markdown') io.out(renderMarkdown(reports));
  else io.out(renderTable(reports));
  return planExitCode(reports, invalid.length > 0, values['detailed-exitcode'] === true);
}

function overrideOf(uri: unknown): HypervisorSpec | undefined {
  if (typeof uri !== 'string') return undefined;
  const parsed = HypervisorSpecSchema.safeParse({ uri });
  if (!parsed.success) throw new UsageError(`--hypervisor: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** Every VMM in the manifests: observed, planned, then checked per host against its capacity. */
async function planAll(store: ManifestStore, source: ObservationSource, override: HypervisorSpec | undefined, saved: SavedState | undefined): Promise<PlanReport[]> {
  const reports: PlanReport[] = [];
  const planned: Planned[] = [];
  const hosts = new Map<string, PlanHost>();
  for (const obj of store.list('VirtualMachineMemory')) {
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    const report: PlanReport = { object: key };
    reports.push(report);
    const spec = VMMSpecSchema.safeParse(obj.spec);
    if (!spec.success) {
      report.error = 'invalid spec (see the errors above)';
      continue;
    }
    const host = hostOf(store, obj.metadata.namespace, spec.data.hypervisorRef.name, override, saved);
    report.hypervisor = host?.name ?? spec.data.hypervisorRef.name;
    if (!host) {
      report.error = `Hypervisor "${spec.data.hypervisorRef.name}" is not in the manifests${saved ? ' nor in --observed' : ''} (or is invalid)${saved ? '' : '; pass --hypervisor <uri>'}`;
      continue;
    }
    try {
      const observed = await source.observe(key, spec.data, host);
      const p = planVMM(key, spec.data, host.spec, observed, host.key, host.name);
      reports[reports.length - 1] = p.report;
      planned.push(p);
      hosts.set(host.key, host);
    } catch (err) {
      report.error = (err as Error).message;
    }
  }
  const facts = new Map<string, HostFacts>();
  for (const [key, host] of hosts) {
    if (!planned.some((p) => p.host === key && p.plan.steps.length > 0)) continue;
    try {
      facts.set(key, await source.host(host));
    } catch (err) {
      // The check cannot be made: no plan on this host is shown as if it had passed it.
      for (const p of planned.filter((x) => x.host === key && x.plan.steps.length > 0)) {
        p.report.error = `host capacity of Hypervisor ${host.name} could not be checked: ${(err as Error).message}`;
      }
    }
  }
  checkCapacity(planned.filter((p) => p.report.error === undefined), facts);
  for (const p of planned) if (p.report.error === undefined) describe(p);
  return reports;
}

/** The Hypervisor a VMM is planned against: the override, the manifests', or (from a saved state) the saved one. */
function hostOf(store: ManifestStore, namespace: string, name: string, override: HypervisorSpec | undefined, saved: SavedState | undefined): PlanHost | undefined {
  if (override) return { key: '--hypervisor', name: override.uri, spec: override };
  const key = `${namespace}/${name}`;
  const hv = store.get('Hypervisor', { namespace, name });
  const parsed = hv ? HypervisorSpecSchema.safeParse(hv.spec) : undefined;
  if (parsed?.success) return { key, name, spec: parsed.data };
  // A pull request that changes only VMMs plans them against the Hypervisors it saved.
  const savedHv = hv ? undefined : saved?.hypervisors.get(key)?.object;
  return savedHv ? { key, name, spec: savedHv.spec } : undefined;
}

function renderTable(reports: readonly PlanReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`VirtualMachineMemory ${r.object}${r.vm ? `  (VM ${r.vm} on ${r.hypervisor}, ${r.hypervisorType}, ${r.powerState})` : ''}`);
    if (r.error) {
      lines.push(`  error: ${r.error}`, '');
      continue;
    }
    if (!hasChanges(r)) lines.push('  steps: none');
    else {
      lines.push('  steps:');
      (r.steps ?? []).forEach((s, i) => lines.push(`    ${i + 1}. ${s.field.padEnd(11)} ${s.world.padEnd(6)} ${s.from} → ${s.to}${s.via ? ` (${s.via})` : ''}`));
    }
    lines.push('  verdicts:');
    for (const v of r.verdicts ?? []) lines.push(`    ${v.field.padEnd(11)} ${v.verdict.padEnd(16)} ${v.verdict === 'Applied' ? `${v.desired}` : v.message}`);
    for (const x of r.roundings ?? []) lines.push(`  rounded: ${x.field} ${x.requested} → ${x.effective}`);
    lines.push('');
  }
  return lines.join('\n').trimEnd();
}
