/**
 * What a person reads on a terminal: colors (only on a TTY, never with
 * NO_COLOR — https://no-color.org), Events as one readable line each, the
 * status table (the demo's columns), and pino's JSON turned into readable
 * log lines for `--log-format=console`.
 */
import type { Condition } from '../api/conditions.ts';
import { conditionOf } from '../controller/conditions.ts';
import type { StoredObject } from '../controller/ports.ts';
import type { RecordedEvent } from '../standalone/store.ts';

export interface Painter {
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  red(s: string): string;
}

/** Colors for a stream: only when it is a terminal and NO_COLOR is unset or empty. */
export function painterFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): Painter {
  const on = stream.isTTY === true && !env.NO_COLOR;
  const paint = (code: string) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { bold: paint('1'), dim: paint('2'), green: paint('32'), yellow: paint('33'), red: paint('31') };
}

export function formatEvent(p: Painter, e: RecordedEvent): string {
  const name = e.object.split('/').slice(1).join('/').replace(/^default\//, '');
  const kind = e.object.startsWith('Hypervisor') ? 'hv ' : '';
  const type = e.type === 'Warning' ? p.yellow('Warning') : p.green('Normal ');
  return `${p.dim(e.time.slice(11, 19))} ${type} ${p.bold(`${kind}${name}`.padEnd(14))} ${e.reason.padEnd(18)} ${e.note}`;
}

const readyOf = (o: StoredObject): Condition | undefined => conditionOf(o, 'Ready');
const WAITING = new Set(['RestartRequired', 'AwaitingPowerOff']);

function vmmRow(p: Painter, o: StoredObject): string[] {
  const ready = readyOf(o);
  const observed = (o.status?.observed ?? {}) as Record<string, string>;
  const pending = ((o.status?.pending ?? []) as { field: string; value: string }[]).map((x) => `${x.field}=${x.value}`).join(',');
  const readyText = ready?.status === 'True' ? p.green('True') : ready?.status === 'False' ? (WAITING.has(ready.reason) ? p.yellow('False') : p.red('False')) : 'Unknown';
  const hv = String((o.spec as { hypervisorRef?: { name?: string } } | undefined)?.hypervisorRef?.name ?? '');
  return [o.metadata.name, hv, readyText, ready?.reason ?? '', observed.powerState ?? '', observed.maxMemory ?? '', observed.memory ?? '', observed.actualMemory ?? '', pending];
}

function hypervisorRow(p: Painter, o: StoredObject): string[] {
  const ready = readyOf(o);
  const readyText = ready?.status === 'True' ? p.green('True') : ready?.status === 'False' ? p.red('False') : 'Unknown';
  return [o.metadata.name, readyText, ready?.reason ?? '', ready?.status === 'True' ? '' : (ready?.message ?? '')];
}

/** Aligned columns; widths ignore color codes. */
function columns(p: Painter, head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => strip(r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c + ' '.repeat((widths[i] ?? 0) - strip(c).length)).join('  ').trimEnd();
  return [p.dim(line(head)), ...rows.map(line)];
}

export const VMM_COLUMNS = ['NAME', 'HYPERVISOR', 'READY', 'REASON', 'POWER', 'MAX', 'MEMORY', 'ACTUAL', 'PENDING'];

export function vmmTable(p: Painter, vmms: readonly StoredObject[]): string[] {
  return columns(p, VMM_COLUMNS, vmms.map((o) => vmmRow(p, o)));
}

/** `run --once -o table` and `vmmem get`: Hypervisors, then VirtualMachineMemories. */
export function statusTables(p: Painter, objects: readonly StoredObject[]): string {
  const hvs = objects.filter((o) => o.kind === 'Hypervisor');
  const vmms = objects.filter((o) => o.kind === 'VirtualMachineMemory');
  const out: string[] = [];
  if (hvs.length) out.push(p.bold('Hypervisors:'), ...columns(p, ['NAME', 'READY', 'REASON', 'MESSAGE'], hvs.map((o) => hypervisorRow(p, o))), '');
  out.push(p.bold('VirtualMachineMemories:'), ...vmmTable(p, vmms));
  const stuck = vmms.filter((o) => readyOf(o)?.status !== 'True');
  if (stuck.length) {
    out.push('', p.bold('Not Ready:'));
    for (const o of stuck) out.push(`  ${o.metadata.namespace}/${o.metadata.name}: ${readyOf(o)?.reason ?? 'no status'}: ${readyOf(o)?.message ?? ''}`.trimEnd());
  }
  return out.join('\n');
}

export function strip(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;]*m/g, '');
}

/**
 * A pino destination printing `HH:MM:SS LEVEL message key=value…` instead of
 * JSON (pino has already redacted secrets by the time a line gets here).
 */
export function consoleLogStream(out: { write(s: string): unknown; isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): { write(line: string): void } {
  const p = painterFor(out, env);
  const levelText = (level: unknown) => {
    const l = String(level).toUpperCase().padEnd(5);
    return l.startsWith('ERROR') || l.startsWith('FATAL') ? p.red(l) : l.startsWith('WARN') ? p.yellow(l) : p.dim(l);
  };
  return {
    write(line: string) {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      const { time, level, msg, pid: _pid, name: _name, hostname: _host, ...rest } = entry;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
        .join(' ');
      out.write(`${p.dim(String(time ?? '').slice(11, 19))} ${levelText(level)} ${String(msg ?? '')}${fields ? ` ${p.dim(fields)}` : ''}\n`);
    },
  };
}
