/**
 * The sim's wire format between a sim server and remote sim drivers: one
 * JSON document per line. JSON has no bigint, and every memory value is one,
 * so bigints travel as {"$n": "<decimal>"}; DriverErrors travel as their
 * fields so the client re-throws the same error the server's driver raised.
 */
import { DriverError, type DriverErrorCode } from '../driver.ts';
import type { Step } from '../../model/memory.ts';

/** A request: one Driver method on one inventory of the server. */
export interface SimRequest {
  id: number;
  method: 'connect' | 'identify' | 'lookup' | 'observe' | 'observeAll' | 'apply' | 'subscribe' | 'close';
  args: unknown[];
}

export type SimMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: WireError }
  | { event: unknown };

export interface WireError {
  code: DriverErrorCode;
  message: string;
  op: string;
  vm?: string;
  hypervisorMessage?: string;
  applied?: Step[];
}

/** Bound on one line, both ways: a sim server is a test peer, but still a peer. */
export const MAX_LINE_BYTES = 8 * 1024 * 1024;

export function encode(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? { $n: v.toString() } : v));
}

export function decode(line: string): unknown {
  return JSON.parse(line, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o);
      if (keys.length === 1 && keys[0] === '$n' && typeof o.$n === 'string' && /^-?\d+$/.test(o.$n)) return BigInt(o.$n);
    }
    return v;
  });
}

export function toWireError(err: unknown, method: string): WireError {
  if (err instanceof DriverError) {
    return {
      code: err.code,
      message: err.message,
      op: err.op,
      ...(err.vm !== undefined ? { vm: err.vm } : {}),
      ...(err.hypervisorMessage !== undefined ? { hypervisorMessage: err.hypervisorMessage } : {}),
      ...(err.applied.length ? { applied: err.applied } : {}),
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'Protocol', message: `sim server: ${method}: ${message}`, op: method, hypervisorMessage: message };
}

export function fromWireError(e: WireError): DriverError {
  return new DriverError(e.code, e.message, {
    op: e.op,
    ...(e.vm !== undefined ? { vm: e.vm } : {}),
    ...(e.hypervisorMessage !== undefined ? { hypervisorMessage: e.hypervisorMessage } : {}),
    ...(e.applied ? { applied: e.applied } : {}),
  });
}

/** Splits a byte stream into lines, refusing any line over MAX_LINE_BYTES. */
export class LineReader {
  private buffered = '';
  private readonly onLine: (line: string) => void;
  constructor(onLine: (line: string) => void) {
    this.onLine = onLine;
  }

  push(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      if (line) this.onLine(line);
    }
    if (this.buffered.length > MAX_LINE_BYTES) throw new Error(`sim wire: a line exceeds ${MAX_LINE_BYTES} bytes`);
  }
}
