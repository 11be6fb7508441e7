/**
 * `vmmem plan -f <manifests>... [--hypervisor <uri>] [-o table|yaml|json]`:
 * for each VirtualMachineMemory, observe its VM and print the ordered steps
 * and the verdicts — changing nothing. For a GitOps pull-request check.
 * Exit 0: plan shown; 3: some field is Unsupported/Unsafe/Invalid; 1: a VM
 * could not be observed or the manifests are invalid; 2: usage.
 */
import { stringify } from 'yaml';
import { HypervisorSpecSchema } from '../api/hypervisor.ts';
import type { HypervisorSpec } from '../api/hypervisor.ts';
import { VMMSpecSchema } from '../api/vmm.ts';
import { createLogger } from '../controller/log.ts';
import { HypervisorPool } from '../controller/pool.ts';
import { desiredFromSpec, vmRefFromSpec } from '../model/desired.ts';
import type { Plan } from '../model/memory.ts';
import { profileFor } from '../model/profiles.ts';
import { formatValue, hotplugDetail, plan as planMemory } from '../planner/plan.ts';
import { expandPaths } from '../manifests/load.ts';
import { manifestProblemLines } from '../manifests/validate.ts';
import { ManifestStore } from '../standalone/store.ts';
import type { ParsedValues } from './args.ts';
import type { CommandIO } from './io.ts';

interface PlanReport {
  object: string;
  vm?: string;
  hypervisor?: string;
  hypervisorType?: string;
  powerState?: string;
  steps?: { field: string; world: string; from: string; to: string; via?: string }[];
  verdicts?: { field: string; verdict: string; reason: string; desired: string; observed: string; message: string }[];
  roundings?: { field: string; requested: string; effective: string }[];
  error?: string;
}

/** Flags arrive parsed and checked against the command table (src/cli/commands.ts). */
export async function planCommand(values: ParsedValues, io: CommandIO): Promise<number> {
  const output = (values.output as string | undefined) ?? 'table';
  const files = (values.filename as string[] | undefined) ?? [];
  if (files.length === 0) {
    io.err('vmmem plan: no input: give -f <file|dir> (repeatable)');
    return 2;
  }
  let override: HypervisorSpec | undefined;
  if (typeof values.hypervisor === 'string') {
    const parsed = HypervisorSpecSchema.safeParse({ uri: values.hypervisor });
    if (!parsed.success) {
      io.err(`vmmem plan: --hypervisor: ${parsed.error.issues[0]?.message}`);
      return 2;
    }
    override = parsed.data;
  }
  let paths: string[];
  try {
    paths = expandPaths(files);
  } catch (err) {
    io.err(`vmmem plan: ${(err as Error).message}`);
    return 2;
  }
  // Invalid manifests are reported like `vmmem validate` does, and not planned.
  const invalid = manifestProblemLines(paths).lines;
  for (const line of invalid) io.err(line);

  const log = createLogger({ level: 'warn', name: 'vmmem', stream: process.stderr });
  const store = new ManifestStore(files, { log, watch: false });
  await store.start({ onChange: () => undefined });
  const pool = new HypervisorPool({ store, log, timeoutMs: 30_000 });
  const reports: PlanReport[] = [];
  let failed = invalid.length > 0;
  let stalled = false;
  try {
    for (const obj of store.list('VirtualMachineMemory')) {
      const report: PlanReport = { object: `${obj.metadata.namespace}/${obj.metadata.name}` };
      reports.push(report);
      const spec = VMMSpecSchema.safeParse(obj.spec);
      if (!spec.success) {
        report.error = 'invalid spec (see the errors above)';
        continue;
      }
      const hvKey = { namespace: obj.metadata.namespace, name: spec.data.hypervisorRef.name };
      report.hypervisor = override ? override.uri : hvKey.name;
      let hvSpec = override;
      if (!hvSpec) {
        const hv = store.get('Hypervisor', hvKey);
        const parsed = hv ? HypervisorSpecSchema.safeParse(hv.spec) : undefined;
        if (!parsed?.success) {
          report.error = `Hypervisor "${hvKey.name}" is not in the manifests (or is invalid); pass --hypervisor <uri>`;
          failed = true;
          continue;
        }
        hvSpec = parsed.data;
      }
      try {
        const poolKey = override ? { namespace: '--hypervisor', name: 'override' } : hvKey;
        const { driver } = await pool.get(poolKey, hvSpec);
        const ref = vmRefFromSpec(spec.data);
        const vm = await driver.lookup(ref);
        const observed = await driver.observe(vm);
        const p = planMemory(desiredFromSpec(spec.data), observed, profileFor(observed.type));
        Object.assign(report, describePlan(p), { vm: vm.name, hypervisorType: observed.type, powerState: observed.powerState });
        if (p.verdicts.some((v) => v.kind === 'Unsupported' || v.kind === 'Unsafe' || v.kind === 'Invalid')) stalled = true;
      } catch (err) {
        report.error = (err as Error).message;
        failed = true;
      }
    }
  } finally {
    await pool.closeAll();
    await store.stop();
  }
  if (output === 'json') io.out(JSON.stringify(reports, null, 2));
  else if (output === 'yaml') io.out(stringify(reports, { lineWidth: 0 }).trimEnd());
  else io.out(renderTable(reports));
  return failed ? 1 : stalled ? 3 : 0;
}

function describePlan(p: Plan): Pick<PlanReport, 'steps' | 'verdicts' | 'roundings'> {
  return {
    steps: p.steps.map((s) => {
      const via = hotplugDetail(s);
      return { field: s.field, world: s.world, from: formatValue(s.from), to: formatValue(s.to), ...(via ? { via } : {}) };
    }),
    verdicts: p.verdicts.map((v) => ({
      field: v.field,
      verdict: v.kind,
      reason: v.reason,
      desired: formatValue(v.desired),
      observed: formatValue(v.observed),
      message: v.message,
    })),
    roundings: p.roundings.map((r) => ({ field: r.field, requested: formatValue(r.requested), effective: formatValue(r.effective) })),
  };
}

function renderTable(reports: readonly PlanReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`VirtualMachineMemory ${r.object}${r.vm ? `  (VM ${r.vm} on ${r.hypervisor}, ${r.hypervisorType}, ${r.powerState})` : ''}`);
    if (r.error) {
      lines.push(`  error: ${r.error}`, '');
      continue;
    }
    if (!r.steps?.length) lines.push('  steps: none');
    else {
      lines.push('  steps:');
      r.steps.forEach((s, i) => lines.push(`    ${i + 1}. ${s.field.padEnd(11)} ${s.world.padEnd(6)} ${s.from} → ${s.to}${s.via ? ` (${s.via})` : ''}`));
    }
    lines.push('  verdicts:');
    for (const v of r.verdicts ?? []) lines.push(`    ${v.field.padEnd(11)} ${v.verdict.padEnd(16)} ${v.verdict === 'Applied' ? `${v.desired}` : v.message}`);
    for (const x of r.roundings ?? []) lines.push(`  rounded: ${x.field} ${x.requested} → ${x.effective}`);
    lines.push('');
  }
  return lines.join('\n').trimEnd();
}
