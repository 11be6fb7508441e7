// deploy/argocd/health.lua (Argo CD health check for VirtualMachineMemory and Hypervisor), run by
// gopher-lua (the Lua VM Argo CD embeds, through test/peer/argocd/gopher-lua/main.go, which opens
// the libraries Argo CD opens) and by the C interpreters lua5.1 (the language gopher-lua implements)
// and lua5.4. All come from test/peer/argocd/setup.sh (npm test runs it first); missing ones fail.
//
// The script runs as Argo CD runs it: `obj` is the object converted from JSON to a Lua table, and
// only the libraries Argo CD opens are there (base and table: no string, math, io or os), so a
// script that needed more would fail here as it would in Argo CD.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { vmmemCacheDir } from '../../env/kube.ts';
import { initialStatus, statusForFailure, type BalloonState } from '../../../src/controller/status.ts';
import type { Verdict } from '../../../src/model/memory.ts';
import { GiB, outcomeStatus, runningVM, verdict } from '../../support/status-fixtures.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const HEALTH_LUA = join(ROOT, 'deploy', 'argocd', 'health.lua');
const CM_PATCH = join(ROOT, 'deploy', 'argocd', 'argocd-cm-patch.yaml');
const GOPHER_LUA = 'gopher-lua';
const INTERPRETERS = [GOPHER_LUA, 'lua5.4', 'lua5.1'];
/** Where setup.sh builds the gopher-lua runner (keyed by the runner's sources). */
const gopherLuaBinary = () => join(vmmemCacheDir(), 'argocd', `gopher-lua-${gopherLuaKey()}`, 'gopher-lua-health');
function gopherLuaKey(): string {
  const dir = join(ROOT, 'test', 'peer', 'argocd', 'gopher-lua');
  return createHash('sha256').update(readFileSync(join(dir, 'go.sum'))).update(readFileSync(join(dir, 'main.go'))).digest('hex').slice(0, 12);
}

// ---------------------------------------------------------------------------------------------
// JSON -> Lua table literal (what Argo CD hands the script: objects and arrays become tables,
// arrays 1-based, null becomes nil)
// ---------------------------------------------------------------------------------------------

function luaString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (c < 0x20 || c === 0x7f) out += '\\' + String(c).padStart(3, '0');
    else if (c < 0x80) out += ch;
    // Lua strings are bytes: spell out UTF-8 as decimal escapes (5.1 has no \u{...}).
    else for (const b of Buffer.from(ch, 'utf8')) out += '\\' + String(b).padStart(3, '0');
  }
  return out + '"';
}

function toLua(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`toLua: ${v} is not JSON`);
    return String(v);
  }
  if (typeof v === 'string') return luaString(v);
  if (Array.isArray(v)) return `{${v.map(toLua).join(', ')}}`;
  if (typeof v === 'object') {
    const fields = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== null && x !== undefined)
      .map(([k, x]) => `[${luaString(k)}] = ${toLua(x)}`);
    return `{${fields.join(', ')}}`;
  }
  throw new Error(`toLua: cannot convert ${typeof v}`);
}

// ---------------------------------------------------------------------------------------------
// Running the script
// ---------------------------------------------------------------------------------------------

interface Health {
  status: string;
  message: string;
}

// The runner: every case in one interpreter process. The script gets a fresh environment holding
// only `obj`, Lua's base functions and `table` (what Argo CD opens; its safe `os` subset is unused).
const RUNNER = `
local path = arg[1]
local base = {"assert","error","ipairs","next","pairs","pcall","print","rawequal","rawget","rawset",
  "select","tonumber","tostring","type","unpack","xpcall","getmetatable","setmetatable"}
local function run(o)
  local env = {obj = o, table = table}
  for _, n in ipairs(base) do env[n] = _G[n] end
  env._G = env
  local chunk, err
  if setfenv then
    chunk, err = loadfile(path)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = loadfile(path, "t", env)
  end
  if not chunk then error(err) end
  return chunk()
end
local function clean(s) return (string.gsub(tostring(s), "[\\r\\n\\t]", " ")) end
for i, o in ipairs(CASES) do
  local ok, hs = pcall(run, o)
  if not ok then
    io.write(i, "\\tERROR\\t", clean(hs), "\\n")
  elseif type(hs) ~= "table" then
    io.write(i, "\\tERROR\\tscript returned ", type(hs), "\\n")
  else
    io.write(i, "\\t", clean(hs.status), "\\t", clean(hs.message), "\\n")
  end
end
`;

function interpreter(name: string): string {
  if (name === GOPHER_LUA) {
    const bin = gopherLuaBinary();
    if (!existsSync(bin)) throw new Error(`the gopher-lua runner ${bin} is not built; build it with: bash test/peer/argocd/setup.sh`);
    return bin;
  }
  const r = spawnSync(name, ['-v'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`${name} is not installed (${r.error?.message ?? r.stderr}); install it with: bash test/peer/argocd/setup.sh`);
  }
  return name;
}

/** Run health.lua on each object with `lua`; one result per object, in order. */
function health(lua: string, objects: unknown[]): Health[] {
  if (lua === GOPHER_LUA) return gopherLuaHealth(objects);
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-health-lua-'));
  try {
    const runner = join(dir, 'runner.lua');
    // `{n = nil}` holes would end ipairs early: an absent object is a table with no fields.
    writeFileSync(runner, `CASES = {\n${objects.map((o) => toLua(o ?? {})).join(',\n')}\n}\n${RUNNER}`);
    const out = execFileSync(interpreter(lua), [runner, HEALTH_LUA], { encoding: 'utf8' });
    const lines = out.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, objects.length, `${lua} printed ${lines.length} results for ${objects.length} objects:\n${out}`);
    return lines.map((l, i) => {
      const [n, status, ...message] = l.split('\t');
      assert.equal(n, String(i + 1));
      if (status === 'ERROR') assert.fail(`${lua}: health.lua failed on case ${i + 1}: ${message.join('\t')}`);
      return { status: status!, message: message.join('\t') };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same through gopher-lua: objects as JSON on stdin (as Argo CD decodes them), one JSON result per line. */
function gopherLuaHealth(objects: unknown[]): Health[] {
  const out = execFileSync(interpreter(GOPHER_LUA), [HEALTH_LUA], { input: JSON.stringify(objects.map((o) => o ?? {})), encoding: 'utf8', maxBuffer: 64 << 20 });
  const lines = out.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, objects.length, `gopher-lua printed ${lines.length} results for ${objects.length} objects`);
  return lines.map((l, i) => {
    const r = JSON.parse(l) as { status?: string; message?: string; error?: string };
    if (r.error !== undefined) assert.fail(`gopher-lua: health.lua failed on case ${i + 1}: ${r.error}`);
    return { status: r.status ?? '', message: r.message ?? '' };
  });
}

// ---------------------------------------------------------------------------------------------
// Objects shaped as vmmem writes them (DESIGN §4)
// ---------------------------------------------------------------------------------------------

type Status = 'True' | 'False' | 'Unknown';
const T0 = '2026-11-27T02:00:00Z';

function cond(type: string, status: Status, reason: string, message: string, observedGeneration = 3) {
  return { type, status, reason, message, observedGeneration, lastTransitionTime: T0 };
}

function vmm(status: Record<string, unknown> | undefined, generation = 3) {
  return {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { name: 'web-01', namespace: 'vms', generation, uid: '5a2c0e9e-0000-4000-8000-000000000001', resourceVersion: '812' },
    spec: { hypervisorRef: { name: 'kvm-host-a' }, vm: { name: 'web-01' }, maxMemory: '16Gi', memory: '6Gi' },
    ...(status === undefined ? {} : { status }),
  };
}

const observed = { powerState: 'Running', hypervisorType: 'qemu', maxMemory: '8Gi', memory: '6Gi', actualMemory: '6Gi' };

const READY = cond('Ready', 'True', 'Converged', 'maxMemory 8Gi, memory 6Gi in effect');
const NOT_RECONCILING = cond('Reconciling', 'False', 'Converged', '');
const NOT_STALLED = cond('Stalled', 'False', 'Converged', '');
const NO_RESTART = cond('RestartRequired', 'False', 'Converged', '');

const RESTART_MAX = cond('RestartRequired', 'True', 'RestartRequired', 'maxMemory 8Gi -> 16Gi: QEMU cannot resize RAM of a running domain; takes effect at the next cold boot');
const PENDING_MAX = { field: 'maxMemory', value: '16Gi', reason: 'RestartRequired', message: 'takes effect at the next cold boot' };
const PENDING_POWEROFF = { field: 'maxMemory', value: '12Gi', reason: 'AwaitingPowerOff', message: 'memory hot-add is disabled: applied when the VM is powered off' };
const STALLED_UNSAFE = cond('Stalled', 'True', 'UnsafeLimit', 'limit 4Gi is below maxMemory 4Gi + overhead margin 512Mi: QEMU would be OOM-killed; set allowUnsafeLimit to insist');

interface Case {
  name: string;
  obj: unknown;
  status: 'Healthy' | 'Progressing' | 'Degraded';
  message?: string | RegExp;
}

const CASES: Case[] = [
  { name: 'no status yet (just applied)', obj: vmm(undefined, 1), status: 'Progressing', message: /no status yet/ },
  { name: 'empty status', obj: vmm({}, 1), status: 'Progressing', message: /no status yet/ },
  {
    name: 'first sight: Ready=Unknown + Reconciling=True',
    obj: vmm({
      observedGeneration: 1,
      conditions: [cond('Ready', 'Unknown', 'Reconciling', 'vmmem is observing the VM', 1), cond('Reconciling', 'True', 'Reconciling', 'vmmem is observing the VM', 1)],
    }, 1),
    status: 'Progressing',
    message: 'Reconciling: vmmem is observing the VM',
  },
  {
    name: 'spec changed, status still for the previous generation (even though Ready=True)',
    obj: vmm({ observedGeneration: 2, observed, conditions: [cond('Ready', 'True', 'Converged', 'in effect', 2)] }, 3),
    status: 'Progressing',
    message: 'Waiting for vmmem to observe generation 3 (status is for generation 2)',
  },
  {
    name: 'status without observedGeneration',
    obj: vmm({ conditions: [READY] }, 3),
    status: 'Progressing',
    message: 'Waiting for vmmem to observe generation 3 (status is for generation none)',
  },
  {
    name: 'balloon inflating',
    obj: vmm({
      observedGeneration: 3,
      observed: { ...observed, actualMemory: '7Gi' },
      conditions: [cond('Ready', 'False', 'BalloonInflating', 'memory 6Gi: guest holds 7Gi'), cond('Reconciling', 'True', 'BalloonInflating', 'memory 6Gi: guest holds 7Gi, waiting for the balloon'), NOT_STALLED, NO_RESTART],
    }),
    status: 'Progressing',
    message: 'BalloonInflating: memory 6Gi: guest holds 7Gi, waiting for the balloon',
  },
  {
    name: 'maxMemory waits for a restart (RestartRequired + pending)',
    obj: vmm({
      observedGeneration: 3,
      observed,
      pending: [PENDING_MAX],
      conditions: [cond('Ready', 'False', 'RestartRequired', 'maxMemory waits for a restart'), NOT_RECONCILING, NOT_STALLED, RESTART_MAX],
    }),
    status: 'Healthy',
    message: `Applied; waiting for a restart or power-off: maxMemory=16Gi (RestartRequired). ${RESTART_MAX.message}`,
  },
  {
    name: 'ESX without hot-add: AwaitingPowerOff in pending, RestartRequired=True',
    obj: vmm({
      observedGeneration: 3,
      pending: [PENDING_POWEROFF, { field: 'memory', value: '12Gi', reason: 'AwaitingPowerOff', message: 'with maxMemory' }],
      conditions: [cond('Ready', 'False', 'AwaitingPowerOff', 'maxMemory waits for power-off'), NOT_RECONCILING, NOT_STALLED, cond('RestartRequired', 'True', 'AwaitingPowerOff', 'maxMemory 8Gi -> 12Gi waits for power-off')],
    }),
    status: 'Healthy',
    message: 'Applied; waiting for a restart or power-off: maxMemory=12Gi (AwaitingPowerOff), memory=12Gi (AwaitingPowerOff). maxMemory 8Gi -> 12Gi waits for power-off',
  },
  {
    name: 'a pending AwaitingPowerOff alone (no RestartRequired condition)',
    obj: vmm({ observedGeneration: 3, pending: [PENDING_POWEROFF], conditions: [READY] }),
    status: 'Healthy',
    message: 'Applied; waiting for a restart or power-off: maxMemory=12Gi (AwaitingPowerOff)',
  },
  {
    name: 'RestartRequired=True without pending entries',
    obj: vmm({ observedGeneration: 3, conditions: [cond('RestartRequired', 'True', 'RestartRequired', 'maxMemory waits')] }),
    status: 'Healthy',
    message: 'Applied; waiting for a restart. maxMemory waits',
  },
  {
    name: 'UnsafeLimit: Degraded with the Stalled message',
    obj: vmm({ observedGeneration: 3, conditions: [cond('Ready', 'False', 'UnsafeLimit', 'limit refused'), NOT_RECONCILING, STALLED_UNSAFE, NO_RESTART] }),
    status: 'Degraded',
    message: STALLED_UNSAFE.message,
  },
  {
    name: 'Stalled wins over Reconciling (waiting cannot fix the spec)',
    obj: vmm({ observedGeneration: 3, conditions: [cond('Reconciling', 'True', 'BalloonInflating', 'balloon'), cond('Stalled', 'True', 'Unsupported', 'reservation: QEMU/KVM has no memory reservation (min_guarantee)')] }),
    status: 'Degraded',
    message: 'reservation: QEMU/KVM has no memory reservation (min_guarantee)',
  },
  {
    name: 'Stalled wins over RestartRequired',
    obj: vmm({ observedGeneration: 3, pending: [PENDING_MAX], conditions: [RESTART_MAX, cond('Stalled', 'True', 'Conflict', 'vms/web-01-old manages this VM since 2026-11-20')] }),
    status: 'Degraded',
    message: 'vms/web-01-old manages this VM since 2026-11-20',
  },
  {
    name: 'Stalled with an empty message falls back to the reason',
    obj: vmm({ observedGeneration: 3, conditions: [cond('Stalled', 'True', 'VMNotFound', '')] }),
    status: 'Degraded',
    message: 'VMNotFound',
  },
  {
    name: 'converged',
    obj: vmm({ observedGeneration: 3, observed, conditions: [READY, NOT_RECONCILING, NOT_STALLED, NO_RESTART], lastSyncTime: T0 }),
    status: 'Healthy',
    message: 'Converged: maxMemory 8Gi, memory 6Gi in effect',
  },
  {
    name: 'Ready=True computed for an older generation does not count',
    obj: vmm({ observedGeneration: 3, conditions: [cond('Ready', 'True', 'Converged', 'old', 2)] }),
    status: 'Progressing',
    message: 'Waiting for the Ready condition of generation 3',
  },
  {
    name: 'a stale Stalled=True (spec since fixed) does not count',
    obj: vmm({ observedGeneration: 3, conditions: [cond('Stalled', 'True', 'UnsafeLimit', 'old', 2), READY] }),
    status: 'Healthy',
  },
  {
    name: 'conditions without observedGeneration count as current',
    obj: vmm({ observedGeneration: 3, conditions: [{ type: 'Ready', status: 'True', reason: 'Converged', message: 'ok', lastTransitionTime: T0 }] }),
    status: 'Healthy',
    message: 'Converged: ok',
  },
  {
    name: 'hypervisor unreachable (Ready=False, not stalled)',
    obj: vmm({ observedGeneration: 3, conditions: [cond('Ready', 'False', 'HypervisorUnreachable', 'dial tcp 10.0.0.5:16514: connect: connection refused'), NOT_STALLED] }),
    status: 'Progressing',
    message: 'Not ready: HypervisorUnreachable: dial tcp 10.0.0.5:16514: connect: connection refused',
  },
  {
    name: 'Ready=Unknown without reason or message',
    obj: vmm({ observedGeneration: 3, conditions: [{ type: 'Ready', status: 'Unknown', observedGeneration: 3, lastTransitionTime: T0 }] }),
    status: 'Progressing',
    message: 'Not ready: Ready=Unknown',
  },
  {
    name: 'no metadata.generation: conditions decide',
    obj: { kind: 'VirtualMachineMemory', metadata: { name: 'x' }, status: { conditions: [READY] } },
    status: 'Healthy',
  },
  {
    name: 'non-ASCII and quotes in messages survive',
    obj: vmm({ observedGeneration: 3, conditions: [cond('Stalled', 'True', 'InvalidSpec', 'spec.memory "6 Gi" is not a quantity — use 6Gi')] }),
    status: 'Degraded',
    message: 'spec.memory "6 Gi" is not a quantity — use 6Gi',
  },
  // Hypervisor (same script).
  {
    name: 'Hypervisor connected',
    obj: {
      apiVersion: 'vmmem.io/v1alpha1',
      kind: 'Hypervisor',
      metadata: { name: 'kvm-host-a', namespace: 'vms', generation: 1 },
      spec: { uri: 'qemu+tls://kvm-host-a.example.com/system' },
      status: { observedGeneration: 1, type: 'qemu', version: '9.0.0', conditions: [cond('Connected', 'True', 'Connected', 'qemu 9.0.0 on kvm-host-a', 1), cond('Ready', 'True', 'Connected', 'qemu 9.0.0 on kvm-host-a', 1)] },
    },
    status: 'Healthy',
    message: 'Connected: qemu 9.0.0 on kvm-host-a',
  },
  {
    name: 'Hypervisor with bad credentials (Ready=False)',
    obj: {
      kind: 'Hypervisor',
      metadata: { name: 'vcenter', namespace: 'vms', generation: 2 },
      status: { observedGeneration: 2, conditions: [cond('Connected', 'False', 'AuthenticationFailed', 'Cannot complete login due to an incorrect user name or password.', 2), cond('Ready', 'False', 'AuthenticationFailed', 'Cannot complete login due to an incorrect user name or password.', 2)] },
    },
    status: 'Progressing',
    message: 'Not ready: AuthenticationFailed: Cannot complete login due to an incorrect user name or password.',
  },
  {
    name: 'Hypervisor stalled on a Secret without ca.crt',
    obj: {
      kind: 'Hypervisor',
      metadata: { name: 'vcenter', namespace: 'vms', generation: 1 },
      status: { observedGeneration: 1, conditions: [cond('Ready', 'False', 'SecretInvalid', 'Hypervisor vms/vcenter: Secret "vcenter-ca" has no key ca.crt', 1), cond('Stalled', 'True', 'SecretInvalid', 'Hypervisor vms/vcenter: Secret "vcenter-ca" has no key ca.crt', 1)] },
    },
    status: 'Degraded',
    message: 'Hypervisor vms/vcenter: Secret "vcenter-ca" has no key ca.crt',
  },
  { name: 'Hypervisor just created', obj: { kind: 'Hypervisor', metadata: { name: 'h', generation: 1 } }, status: 'Progressing', message: /no status yet/ },
];

// ---------------------------------------------------------------------------------------------
// Every combination of the four conditions and pending entries, against the documented order
// ---------------------------------------------------------------------------------------------

type Opt = Status | 'absent';
interface Combo {
  stalled: Opt;
  reconciling: Opt;
  restart: Opt;
  ready: Opt;
  pending: 'none' | 'RestartRequired' | 'AwaitingPowerOff';
}

function combos(): Combo[] {
  const out: Combo[] = [];
  const tri: Opt[] = ['absent', 'False', 'True'];
  for (const stalled of tri)
    for (const reconciling of tri)
      for (const restart of tri)
        for (const ready of ['absent', 'Unknown', 'False', 'True'] as Opt[])
          for (const pending of ['none', 'RestartRequired', 'AwaitingPowerOff'] as const) out.push({ stalled, reconciling, restart, ready, pending });
  return out;
}

function comboObject(c: Combo): unknown {
  const conditions = [];
  if (c.ready !== 'absent') conditions.push(cond('Ready', c.ready, 'R', 'ready message'));
  if (c.reconciling !== 'absent') conditions.push(cond('Reconciling', c.reconciling, 'BalloonInflating', 'reconciling message'));
  if (c.stalled !== 'absent') conditions.push(cond('Stalled', c.stalled, 'Unsupported', 'stalled message'));
  if (c.restart !== 'absent') conditions.push(cond('RestartRequired', c.restart, 'RestartRequired', 'restart message'));
  const pending = c.pending === 'none' ? [] : [{ field: 'maxMemory', value: '16Gi', reason: c.pending, message: 'later' }];
  return vmm({ observedGeneration: 3, conditions, ...(pending.length ? { pending } : {}) });
}

/** The precedence health.lua documents, stated independently. */
function expected(c: Combo): Health['status'] {
  if (c.stalled === 'True') return 'Degraded';
  if (c.reconciling === 'True') return 'Progressing';
  // Only a human's move is left (restart, power-off): Healthy, so later sync waves are not held.
  if (c.restart === 'True' || c.pending !== 'none') return 'Healthy';
  if (c.ready === 'True') return 'Healthy';
  return 'Progressing';
}

// ---------------------------------------------------------------------------------------------
// Statuses as the controller itself phrases them (src/controller/status.ts), not hand-written
// ---------------------------------------------------------------------------------------------

const observedVM = runningVM('web-01', '5a2c0e9e-0000-4000-8000-000000000001');
const APPLIED = [verdict('maxMemory', 'Applied', 8n * GiB, 'Applied', 'maxMemory 8Gi: Applied'), verdict('memory', 'Applied', 6n * GiB, 'Applied', 'memory 6Gi: Applied')];
const T = '2026-11-27T02:00:00Z';
const outcome = (verdicts: Verdict[], balloon?: BalloonState) => outcomeStatus(observedVM, verdicts, { generation: 3, at: T, ...(balloon ? { balloon } : {}) });
const restartStatus = outcome([verdict('maxMemory', 'RestartRequired', 16n * GiB, 'RestartRequired', 'maxMemory 8Gi -> 16Gi: RestartRequired: QEMU cannot resize RAM live'), APPLIED[1]!]);

const CONTROLLER_CASES: { name: string; status: unknown; generation?: number; want: Health['status']; message?: RegExp }[] = [
  { name: 'initialStatus (first sight)', status: initialStatus(3, T), want: 'Progressing', message: /FirstObservation/ },
  { name: 'converged', status: outcome(APPLIED), want: 'Healthy', message: /^Converged: in effect: maxMemory 8Gi, memory 6Gi$/ },
  { name: 'maxMemory waits for a restart', status: restartStatus, want: 'Healthy', message: /^Applied; waiting for a restart or power-off: maxMemory=16Gi \(RestartRequired\)/ },
  {
    name: 'ESX maxMemory awaiting power-off',
    status: outcome([verdict('maxMemory', 'AwaitingPowerOff', 12n * GiB, 'AwaitingPowerOff', 'maxMemory 8Gi -> 12Gi: AwaitingPowerOff: hot-add disabled'), APPLIED[1]!]),
    want: 'Healthy',
    message: /^Applied; waiting for a restart or power-off: maxMemory=12Gi \(AwaitingPowerOff\)/,
  },
  {
    name: 'reservation unsupported on QEMU',
    status: outcome([...APPLIED, verdict('reservation', 'Unsupported', 2n * GiB, 'Unsupported', 'reservation 2Gi: Unsupported: QEMU/KVM (libvirt): min_guarantee is not supported')]),
    want: 'Degraded',
    message: /^reservation 2Gi: Unsupported/,
  },
  {
    name: 'unsafe limit',
    status: outcome([...APPLIED, verdict('limit', 'Unsafe', 8n * GiB, 'UnsafeLimit', 'limit 8Gi: UnsafeLimit: below maxMemory + 512Mi')]),
    want: 'Degraded',
    message: /UnsafeLimit/,
  },
  { name: 'balloon settling', status: outcome(APPLIED, { state: 'settling', target: 6n * GiB, actual: 7n * GiB, sinceMs: 0 }), want: 'Progressing', message: /^BalloonInflating: / },
  { name: 'balloon unresponsive', status: outcome(APPLIED, { state: 'unresponsive', target: 6n * GiB, actual: 7n * GiB, waitedMs: 120_000 }), want: 'Degraded', message: /balloon did not reach 6Gi/ },
  { name: 'hypervisor unreachable (retrying)', status: statusForFailure(outcome(APPLIED), 3, { reason: 'HypervisorUnreachable', message: 'connect ECONNREFUSED', stalled: false }, T), want: 'Progressing', message: /^HypervisorUnreachable: retrying/ },
  { name: 'VM not found (retrying)', status: statusForFailure(initialStatus(3, T), 3, { reason: 'VMNotFound', message: 'web-01 not found', stalled: false }, T), want: 'Progressing', message: /VMNotFound/ },
  { name: 'conflict', status: statusForFailure(initialStatus(3, T), 3, { reason: 'Conflict', message: 'VirtualMachineMemory "old" already manages this VM', stalled: true }, T), want: 'Degraded', message: /already manages/ },
  { name: 'invalid spec', status: statusForFailure(initialStatus(3, T), 3, { reason: 'InvalidSpec', message: 'spec.memory: must not exceed maxMemory', stalled: true }, T), want: 'Degraded', message: /spec.memory/ },
  { name: 'unreachable while a restart is pending', status: statusForFailure(restartStatus, 3, { reason: 'HypervisorUnreachable', message: 'timeout', stalled: false }, T), want: 'Progressing' },
  { name: 'converged, then the spec changed', status: outcome(APPLIED), generation: 4, want: 'Progressing', message: /generation 4/ },
];

// ---------------------------------------------------------------------------------------------

void describe('deploy/argocd/health.lua', () => {
  for (const lua of INTERPRETERS) {
    void describe(lua, () => {
      void it('maps real status shapes of VirtualMachineMemory and Hypervisor to Argo CD health', () => {
        const results = health(lua, CASES.map((c) => c.obj));
        CASES.forEach((c, i) => {
          const got = results[i]!;
          assert.equal(got.status, c.status, `${c.name}: status (message: ${got.message})`);
          if (typeof c.message === 'string') assert.equal(got.message, c.message, `${c.name}: message`);
          else if (c.message) assert.match(got.message, c.message, `${c.name}: message`);
          assert.notEqual(got.message, '', `${c.name}: a message is always set`);
        });
      });

      void it('follows the documented order for every combination of Stalled, Reconciling, RestartRequired, Ready and pending (324 cases)', () => {
        const all = combos();
        const results = health(lua, all.map(comboObject));
        const wrong: string[] = [];
        all.forEach((c, i) => {
          const got = results[i]!;
          const want = expected(c);
          if (got.status !== want) wrong.push(`${JSON.stringify(c)}: got ${got.status} (${got.message}), want ${want}`);
          // The message says why: the Stalled message, the Reconciling one, or the pending fields.
          if (want === 'Degraded' && got.message !== 'stalled message') wrong.push(`${JSON.stringify(c)}: Degraded message ${got.message}`);
          if (c.stalled !== 'True' && c.reconciling === 'True' && got.message !== 'BalloonInflating: reconciling message') {
            wrong.push(`${JSON.stringify(c)}: Reconciling message ${got.message}`);
          }
          if (c.stalled !== 'True' && c.reconciling !== 'True' && c.pending !== 'none' && !got.message.includes(`maxMemory=16Gi (${c.pending})`)) {
            wrong.push(`${JSON.stringify(c)}: pending not listed: ${got.message}`);
          }
        });
        assert.deepEqual(wrong, []);
      });
    });
  }

  void it('judges the statuses src/controller/status.ts writes as documented', () => {
    for (const lua of INTERPRETERS) {
      const results = health(lua, CONTROLLER_CASES.map((c) => vmm(c.status as Record<string, unknown>, c.generation ?? 3)));
      CONTROLLER_CASES.forEach((c, i) => {
        assert.equal(results[i]!.status, c.want, `${lua}: ${c.name}: ${results[i]!.message}\nstatus: ${JSON.stringify(c.status)}`);
        if (c.message) assert.match(results[i]!.message, c.message, `${lua}: ${c.name}`);
      });
    }
  });

  void it('argocd-cm-patch.yaml installs exactly health.lua for both kinds (regenerate: bash deploy/argocd/sync-cm-patch.sh)', () => {
    const script = readFileSync(HEALTH_LUA, 'utf8');
    const cm = parseYaml(readFileSync(CM_PATCH, 'utf8')) as { kind: string; metadata: { name: string; namespace: string }; data: Record<string, string> };
    assert.equal(cm.kind, 'ConfigMap');
    assert.deepEqual(cm.metadata.name, 'argocd-cm');
    assert.deepEqual(Object.keys(cm.data).sort(), [
      'resource.customizations.health.vmmem.io_Hypervisor',
      'resource.customizations.health.vmmem.io_VirtualMachineMemory',
    ]);
    for (const [key, value] of Object.entries(cm.data)) assert.equal(value, script, `${key} differs from health.lua`);
  });

  void it('toLua: JSON strings, numbers, nesting and null as Argo CD converts them', () => {
    assert.equal(toLua({ a: [1, 'x"\\\n'], b: null, c: true }), '{["a"] = {1, "x\\"\\\\\\010"}, ["c"] = true}');
    assert.equal(toLua('é'), '"\\195\\169"');
  });
});
