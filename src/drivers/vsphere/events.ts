// VM changes as driver events: property-collector updates → DriverEvents (lifecycle/config).
import type { DriverEvent } from '../driver.ts';
import type { ObjectUpdate } from '../../vsphere/index.ts';

// config.changeVersion changes on every reconfigure (vcsim reports only it, not the fields changed).
export const WATCHED = [
  'name', 'config.uuid', 'config.instanceUuid', 'runtime.powerState',
  'config.changeVersion', 'config.hardware.memoryMB', 'config.memoryAllocation',
];
const POWER_EVENT: Record<string, string> = { poweredOn: 'Started', poweredOff: 'Stopped', suspended: 'Suspended' };

/** Turns property-collector updates into driver events; keeps name/uuid of every VM seen. */
export function eventsOf(updates: ObjectUpdate[], initial: boolean, known: Map<string, { name: string; uuid: string }>): DriverEvent[] {
  const out: DriverEvent[] = [];
  for (const u of updates) {
    const key = u.obj.value;
    const prev = known.get(key);
    const vals = new Map(u.changes.map((c) => [c.name, c.val?.text]));
    const name = vals.get('name') ?? prev?.name ?? key;
    const uuid = vals.get('config.uuid') ?? prev?.uuid ?? vals.get('config.instanceUuid') ?? key;
    if (u.kind === 'leave') {
      known.delete(key);
      out.push({ kind: 'lifecycle', vm: { name, uuid }, detail: 'Undefined' });
      continue;
    }
    known.set(key, { name, uuid });
    if (initial) continue;
    const vm = { name, uuid };
    if (u.kind === 'enter') {
      out.push({ kind: 'lifecycle', vm, detail: 'Defined' });
      continue;
    }
    const power = vals.get('runtime.powerState');
    if (power !== undefined) out.push({ kind: 'lifecycle', vm, detail: POWER_EVENT[power] ?? power });
    if (
      vals.has('config.changeVersion') ||
      vals.has('config.hardware.memoryMB') ||
      u.changes.some((c) => c.name.startsWith('config.memoryAllocation'))
    ) {
      out.push({ kind: 'lifecycle', vm, detail: 'Reconfigured' });
    }
    if (vals.has('name') && prev && prev.name !== name) out.push({ kind: 'lifecycle', vm, detail: 'Renamed' });
  }
  return out;
}
