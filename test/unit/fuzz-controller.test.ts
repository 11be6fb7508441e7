// Bad input through the controller: in standalone mode no API server validates, so any spec a
// manifest holds reaches the reconciler. fast-check generates specs (test/chaos/lib/arbitraries.ts);
// for every spec the zod schema rejects, the VMM must end Stalled (reason InvalidSpec) with a
// message naming the offending field, and the hypervisor must see no memory call at all
// (the sim host's call counters: no virDomainSetMemoryFlags / virDomainSetMemoryParameters /
// ReconfigVM_Task). For specs the schema accepts, every memory call the host saw must carry a value
// the spec declared (no invented values), and the reconcile must not throw anything but RetryableError (retried) or TerminalError (stalled, not retried).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { VMMSpecSchema } from '../../src/api/vmm.ts';
import { parseQuantity } from '../../src/api/quantity.ts';
import { silentLogger } from '../../src/controller/log.ts';
import { Operator } from '../../src/controller/operator.ts';
import { RetryableError } from '../../src/controller/reconcile-support.ts';
import { TerminalError } from '../../src/controller/runner.ts';
import { ManifestStore } from '../../src/standalone/store.ts';
import { resetSimHosts, simHost } from '../../src/drivers/sim/index.ts';
import type { SimHost } from '../../src/drivers/sim/index.ts';
import type { Condition } from '../../src/api/conditions.ts';
import { validSpec, vmmObject, vmmSpec } from '../chaos/lib/arbitraries.ts';

const SET_OPS = ['virDomainSetMemoryFlags', 'virDomainSetMemoryParameters', 'ReconfigVM_Task'];
const VMS = ['vm-1', 'vm-2', 'vm-3'];

let dir = '';
let inventory = '';
let store: ManifestStore;
let operator: Operator;
let host: SimHost;
let counter = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-fuzz-ctl-'));
  inventory = join(dir, 'inventory.yaml');
  writeFileSync(
    inventory,
    stringify({
      type: 'qemu',
      vms: [
        { name: 'vm-1', type: 'qemu', maxMemory: '8Gi', memory: '8Gi' },
        { name: 'vm-2', type: 'xen', maxMemory: '4Gi', memory: '2Gi' },
        { name: 'vm-3', type: 'test', maxMemory: '2Gi' },
      ],
    }),
  );
  writeFileSync(join(dir, 'hv.yaml'), stringify({ apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'hv', namespace: 'default' }, spec: { uri: `sim://${inventory}` } }));
  store = new ManifestStore(dir, { log: silentLogger(), watch: false });
  operator = new Operator({ store, log: silentLogger() });
  await operator.start({ workers: false });
  host = simHost(inventory);
});

after(async () => {
  await operator.stop();
  resetSimHosts();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes one VMM (a fresh name each time, so no memo carries over) and reconciles it once. */
async function reconcileSpec(spec: unknown): Promise<{ name: string; error: unknown }> {
  const name = `fz-${++counter}`;
  writeFileSync(join(dir, 'vmm.yaml'), stringify(vmmObject(name, spec, 'default'), { aliasDuplicateObjects: false }));
  store.reload();
  let error: unknown;
  try {
    await operator.vmmReconciler.reconcile({ namespace: 'default', name });
  } catch (e) {
    error = e;
  }
  return { name, error };
}

const cond = (name: string, type: string) =>
  (store.get('VirtualMachineMemory', { namespace: 'default', name })?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);

test('fuzz: an invalid spec that slips past (standalone) ends Stalled naming the field, with no hypervisor call', async () => {
  let invalid = 0;
  await fc.assert(
    fc.asyncProperty(vmmSpec({ vmNames: VMS }), async (spec) => {
      const parsed = VMMSpecSchema.safeParse(spec);
      fc.pre(!parsed.success);
      invalid++;
      host.resetCalls();
      const { name, error } = await reconcileSpec(spec);
      assert.ok(error instanceof TerminalError, `an invalid spec ends the reconcile with a TerminalError (not retried), got: ${String(error)}`);
      const stalled = cond(name, 'Stalled');
      assert.equal(stalled?.status, 'True', `not Stalled for ${JSON.stringify(spec)}: ${JSON.stringify(stalled)}`);
      assert.equal(stalled?.reason, 'InvalidSpec');
      assert.equal(cond(name, 'Ready')?.status, 'False');
      const fields = parsed.error!.issues.map((i) => `spec${i.path.length ? '.' : ''}${String(i.path[0] ?? '')}`);
      assert.ok(fields.some((f) => stalled.message.includes(f)), `message "${stalled.message}" names none of ${fields.join(', ')}`);
      for (const op of SET_OPS) assert.equal(host.calls[op] ?? 0, 0, `${op} was called for an invalid spec ${JSON.stringify(spec)}`);
      assert.deepEqual(host.callLog.filter((c) => c.vm !== undefined), [], 'no call on any VM for an invalid spec');
    }),
    { numRuns: 300, seed: 11 },
  );
  assert.ok(invalid >= 150, `only ${invalid} invalid specs generated`);
});

test('fuzz: a valid spec reconciles without an unexpected throw, and the host only sees declared values', async () => {
  let valid = 0;
  let checked = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof(vmmSpec({ vmNames: VMS }), validSpec({ vmNames: VMS })), async (spec) => {
      const parsed = VMMSpecSchema.safeParse(spec);
      fc.pre(parsed.success);
      valid++;
      host.resetCalls();
      const { name, error } = await reconcileSpec(spec);
      if (error !== undefined) assert.ok(error instanceof RetryableError || error instanceof TerminalError, `unexpected throw: ${(error as Error)?.stack ?? String(error)}`);
      const ready = cond(name, 'Ready');
      assert.ok(ready, 'no Ready condition written');
      // Every memory value sent to the host is one the spec declared (bytes → KiB in the call detail).
      const declared = new Set<string>();
      for (const f of ['maxMemory', 'memory', 'limit'] as const) {
        const v = parsed.data![f];
        if (typeof v === 'string' && v !== 'Unlimited') declared.add(`${(BigInt(parseBytes(v)) + 1023n) / 1024n}KiB`);
      }
      for (const c of host.callLog) {
        if (c.op !== 'virDomainSetMemoryFlags' || !c.detail) continue;
        const kib = /^(\d+KiB)/.exec(c.detail)?.[1];
        if (kib) checked++;
        if (kib) assert.ok(declared.has(kib) || c.outcome === 'refused', `host got ${c.detail}, spec declared ${[...declared].join(', ')}`);
      }
    }),
    { numRuns: 200, seed: 12 },
  );
  assert.ok(valid >= 10, `only ${valid} valid specs generated`);
  assert.ok(checked >= 10, `only ${checked} memory calls checked`);
});

function parseBytes(v: string): bigint {
  return parseQuantity(v, 'v');
}
