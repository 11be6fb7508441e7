// Errors from the Kubernetes API with context: which call, which object, and the API server's own
// message (from the Status body), never the request or response payload (which may hold Secret data).
import * as k8s from '@kubernetes/client-node';

/** The Status an API server returns with an error (the parts we use). */
export interface ApiStatus {
  code?: number;
  reason?: string;
  message?: string;
}

/** An API call that failed: `op` names the call, `object` the target (`kind ns/name`). */
export class KubeApiError extends Error {
  /** HTTP status code, or undefined for transport failures (refused, reset, timeout). */
  readonly code: number | undefined;
  /** The Status reason (`Conflict`, `NotFound`, `Expired`, ...), when the server sent one. */
  readonly reason: string | undefined;
  readonly op: string;
  readonly object: string;

  constructor(op: string, object: string, cause: unknown) {
    const { code, reason, message } = apiErrorInfo(cause);
    super(`${op} ${object}: ${code !== undefined ? `HTTP ${code}${reason ? ` ${reason}` : ''}: ` : ''}${message}`, { cause });
    this.name = 'KubeApiError';
    this.code = code;
    this.reason = reason;
    this.op = op;
    this.object = object;
  }
}

/** The HTTP status code of an error from client-node (ApiException, Watch errors), if any. */
export function statusCode(e: unknown): number | undefined {
  if (e instanceof KubeApiError) return e.code;
  if (e instanceof k8s.ApiException) return e.code;
  const c = (e as { statusCode?: unknown; code?: unknown } | null)?.statusCode;
  return typeof c === 'number' ? c : undefined;
}

export const isNotFound = (e: unknown): boolean => statusCode(e) === 404;
export const isConflict = (e: unknown): boolean => statusCode(e) === 409;

function parseStatus(body: unknown): ApiStatus | undefined {
  if (typeof body === 'string') {
    try {
      return parseStatus(JSON.parse(body));
    } catch {
      return { message: body.slice(0, 500) };
    }
  }
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    return {
      code: typeof b.code === 'number' ? b.code : undefined,
      reason: typeof b.reason === 'string' ? b.reason : undefined,
      message: typeof b.message === 'string' ? b.message : undefined,
    };
  }
  return undefined;
}

/** Code, reason and a readable message for any error client-node throws. */
export function apiErrorInfo(e: unknown): { code: number | undefined; reason: string | undefined; message: string } {
  if (e instanceof KubeApiError) return { code: e.code, reason: e.reason, message: e.message };
  if (e instanceof k8s.ApiException) {
    const st = parseStatus(e.body);
    // The ApiException's own message embeds the headers and body; use the Status message only.
    return { code: e.code, reason: st?.reason, message: st?.message ?? `HTTP ${e.code}` };
  }
  if (e instanceof Error) {
    const code = statusCode(e);
    const cause = (e as { cause?: unknown }).cause;
    const causeMsg = cause instanceof Error && cause.message && cause.message !== e.message ? ` (${cause.message})` : '';
    return { code, reason: undefined, message: `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}${causeMsg}` };
  }
  return { code: undefined, reason: undefined, message: String(e) };
}
