// How the libvirt driver reports failures: every LibvirtError becomes a
// DriverError naming the call and the VM with libvirt's own words, and an
// aborted caller stops waiting (DriverError 'Timeout') while the daemon's late
// reply is dropped by the RPC layer.
import { DriverError } from '../driver.ts';
import type { DriverErrorCode } from '../driver.ts';
import type { Step } from '../../model/memory.ts';
import { ErrorCode, LibvirtError } from '../../libvirt/index.ts';

const AUTH_CODES: ReadonlySet<number> = new Set([ErrorCode.AUTH_FAILED, ErrorCode.ACCESS_DENIED, ErrorCode.AUTH_UNAVAILABLE, 79 /* AUTH_CANCELLED */]);

/** A LibvirtError (or anything) as a DriverError naming the call and the VM. */
export function toDriverError(err: unknown, op: string, vm?: string, applied?: Step[]): DriverError {
  const details = (hm: string | undefined) => ({
    op,
    ...(vm !== undefined ? { vm } : {}),
    ...(hm !== undefined ? { hypervisorMessage: hm } : {}),
    ...(applied ? { applied: [...applied] } : {}),
    cause: err,
  });
  if (err instanceof DriverError) {
    return applied ? new DriverError(err.code, err.message, { ...details(err.hypervisorMessage), op: err.op }) : err;
  }
  if (!(err instanceof LibvirtError)) {
    const msg = err instanceof Error ? err.message : String(err);
    return new DriverError('Protocol', `libvirt: ${op}${vm ? ` on ${vm}` : ''}: ${msg}`, details(msg));
  }
  let code: DriverErrorCode;
  switch (err.reason) {
    case 'uri':
      code = 'InvalidURI';
      break;
    case 'timeout':
      code = 'Timeout';
      break;
    case 'protocol':
      code = 'Protocol';
      break;
    case 'closed':
      code = /Permission denied|Host key verification failed/i.test(err.message) ? 'AuthFailed' : 'Disconnected';
      break;
    case 'connect': {
      const cause = err.cause as NodeJS.ErrnoException | undefined;
      const tlsish = /TLS|certificate|CERT|SSL/.test(`${err.message} ${cause?.code ?? ''}`);
      code = tlsish ? 'TLS' : 'Unreachable';
      break;
    }
    case 'remote':
      code = err.code === ErrorCode.NO_DOMAIN ? 'VMNotFound' : AUTH_CODES.has(err.code) ? 'AuthFailed' : 'Refused';
      break;
  }
  return new DriverError(code, `libvirt: ${op}${vm ? ` on ${vm}` : ''}: ${err.libvirtMessage}`, details(err.libvirtMessage));
}

/** The DriverError an aborted call rejects with: 'Timeout', naming the call and why the caller stopped. */
export function abortError(signal: AbortSignal, op: string, vm?: string): DriverError {
  const r: unknown = signal.reason;
  const why = r instanceof Error ? r.message : r !== undefined ? String(r) : 'aborted';
  return new DriverError('Timeout', `libvirt: ${op}${vm ? ` on ${vm}` : ''}: the caller stopped waiting (${why})`, {
    op,
    ...(vm !== undefined ? { vm } : {}),
    hypervisorMessage: why,
    cause: r,
  });
}

/** Rejects with abortError() as soon as `signal` aborts; otherwise settles as `p`. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, op: string, vm?: string): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => undefined); // the call may still fail later: nobody listens
    return Promise.reject(abortError(signal, op, vm));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal, op, vm));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}

/** Throws abortError() when `signal` has aborted (checked before each round of calls). */
export function checkAborted(signal: AbortSignal | undefined, op: string, vm?: string): void {
  if (signal?.aborted) throw abortError(signal, op, vm);
}
