/**
 * `vmmem demo` (what `npm start` runs): the real operator, in standalone
 * mode, over examples/demo against three simulated hosts (QEMU/KVM, Xen,
 * ESX). It shows, live, VMs converging, a change that waits for a restart,
 * an ESX change that waits for a power-off, refused fields — and then plays
 * the admin: restarts one VM and powers another off, so the pending changes
 * take effect. Nothing here is scripted output: every line is read back from
 * the operator's status and events.
 */
import { join, resolve } from 'node:path';
import type { Condition } from '../api/conditions.ts';
import { conditionOf } from '../controller/conditions.ts';
import { createLogger } from '../controller/log.ts';
import { Metrics } from '../controller/metrics.ts';
import { Operator } from '../controller/operator.ts';
import type { StoredObject } from '../controller/ports.ts';
import { simHost } from '../drivers/sim/index.ts';
import { ManifestStore } from '../standalone/store.ts';
import type { RecordedEvent } from '../standalone/store.ts';
import { exitCodeFor } from '../standalone/once.ts';
import { sleep } from '../util/sleep.ts';
import type { ParsedValues } from './args.ts';
import { formatEvent, painterFor, vmmTable } from './console.ts';
import type { CommandIO } from './io.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const { bold, dim } = painterFor(process.stdout);

/** Flags arrive parsed and checked against the command table (src/cli/commands.ts). */
export async function demoCommand(values: ParsedValues, io: CommandIO): Promise<number> {
  const dir = typeof values.manifests === 'string' ? resolve(values.manifests) : join(ROOT, 'examples', 'demo');
  process.chdir(ROOT); // the admin actions below name the sim inventories relative to the repository
  const level = (typeof values['log-level'] === 'string' ? values['log-level'] : 'silent') as 'silent';
  const log = createLogger({ level, name: 'vmmem', stream: process.stderr });
  const store = new ManifestStore(dir, {
    log,
    watch: true,
    onEvent: (e) => printEvent(io, e),
  });
  const operator = new Operator({ store, log, metrics: new Metrics(), concurrency: 4 });

  io.out(bold('vmmem demo') + dim(' — the operator in standalone mode over examples/demo, against simulated QEMU/KVM, Xen and ESX hosts'));
  io.out(dim('Events appear as vmmem records them; the table is its status, read back after each change.\n'));
  await operator.start();

  await settle(store, 25_000);
  printTable(io, store.list('VirtualMachineMemory'), 'after the first reconcile');

  io.out(bold('\nAs the admin: restart db-01 and xen-01') + dim(' (their new maxMemory takes effect at a cold boot)'));
  simHost('sim:///examples/sim/kvm.yaml').restart('db-01');
  simHost('sim:///examples/sim/xen.yaml').restart('xen-01');
  await settle(store, 15_000, (o) => o.metadata.name === 'db-01' && readyOf(o)?.status === 'True');
  await settle(store, 5_000, (o) => o.metadata.name === 'xen-01' && readyOf(o)?.status === 'True');

  io.out(bold('\nAs the admin: power off win-01') + dim(' (ESX without memory hot-add cannot grow while powered on)'));
  simHost('sim:///examples/sim/esx.yaml').powerOff('win-01');
  await settle(store, 15_000, (o) => o.metadata.name === 'win-01' && readyOf(o)?.status === 'True');

  const vmms = store.list('VirtualMachineMemory');
  printTable(io, vmms, 'after the restart and the power-off');
  io.out(
    dim('\nStill not Ready are the specs vmmem refuses to apply: they need a change by their owner (Stalled).') +
      dim('\nTry: edit examples/demo/vmms.yaml while `npm start -- --watch` runs, or `vmmem plan -f examples/demo`.'),
  );
  if (values.watch) {
    io.out(dim('\nWatching examples/demo for changes (Ctrl-C to stop)…'));
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  }
  await operator.stop();
  const code = exitCodeFor(vmms);
  // The demo is meant to show stalls: it succeeds when everything is Ready,
  // waiting on an admin, or stalled for the reason the example was written for.
  return code === 1 ? 1 : 0;
}

function readyOf(o: StoredObject): Condition | undefined {
  return conditionOf(o, 'Ready');
}

/** Waits until no VMM is mid-change (or `until` holds), up to `ms`. */
async function settle(store: ManifestStore, ms: number, until?: (o: StoredObject) => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    await sleep(250);
    const vmms = store.list('VirtualMachineMemory');
    if (until) {
      if (vmms.some(until)) return;
      continue;
    }
    const busy = vmms.some((o) => {
      const ready = conditionOf(o, 'Ready');
      return !ready || ready.status === 'Unknown' || conditionOf(o, 'Reconciling')?.status === 'True';
    });
    if (!busy && vmms.length > 0) return;
  }
}

function printEvent(io: CommandIO, e: RecordedEvent): void {
  io.out(formatEvent(painterFor(process.stdout), e));
}

function printTable(io: CommandIO, vmms: readonly StoredObject[], title: string): void {
  io.out(`\n${bold(`VirtualMachineMemories ${title}:`)}`);
  for (const line of vmmTable(painterFor(process.stdout), vmms)) io.out(line);
}
