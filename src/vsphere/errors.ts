// Typed errors of the vSphere client. None of them ever carries a request body, a password or a
// session cookie: messages are built from the operation name, the endpoint (without user info) and
// what the server said.

/** Base class: everything this client throws is a VSphereError. */
export class VSphereError extends Error {
  /** The SOAP method (or client step) that failed, e.g. `ReconfigVM_Task`. */
  readonly method: string;
  constructor(message: string, method: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VSphereError';
    this.method = method;
  }
}

/**
 * A vSphere fault: a SOAP fault returned by the server, or the `info.error` of a failed task.
 * `faultName` is the vim25 fault type (`InvalidPowerState`, `InvalidLogin`, `NotAuthenticated`,
 * `ManagedObjectNotFound`, `InsufficientResourcesFault`, ...). `faultString` is vSphere's own
 * message, kept intact (it may be empty: vcsim often sends none).
 */
export class VSphereFault extends VSphereError {
  readonly faultName: string;
  readonly faultString: string;
  readonly faultCode: string;
  /** Leaf fields of the fault detail, e.g. `{ invalidProperty: 'spec.memoryAllocation' }`. */
  readonly details: Record<string, string>;
  /** For a task fault: the task's managed object id. */
  readonly task: string | undefined;
  constructor(args: {
    method: string;
    faultName: string;
    faultString: string;
    faultCode?: string;
    details?: Record<string, string>;
    task?: string;
  }) {
    const detailText = Object.entries(args.details ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(', ');
    const what = args.faultString !== '' ? args.faultString : detailText !== '' ? detailText : 'no message';
    super(`${args.method}: ${args.faultName}: ${what}`, args.method);
    this.name = 'VSphereFault';
    this.faultName = args.faultName;
    this.faultString = args.faultString;
    this.faultCode = args.faultCode ?? 'ServerFaultCode';
    this.details = args.details ?? {};
    this.task = args.task;
  }
}

/** The connection failed: refused, reset, TLS verification failed, DNS, ... (`cause` has the node error). */
export class VSphereTransportError extends VSphereError {
  /** Node's error code when there is one (`ECONNREFUSED`, `DEPTH_ZERO_SELF_SIGNED_CERT`, ...). */
  readonly code: string | undefined;
  constructor(message: string, method: string, code: string | undefined, options?: { cause?: unknown }) {
    super(message, method, options);
    this.name = 'VSphereTransportError';
    this.code = code;
  }
}

/** A request, or a wait for a task, took longer than allowed. */
export class VSphereTimeoutError extends VSphereError {
  readonly timeoutMs: number;
  constructor(message: string, method: string, timeoutMs: number) {
    super(message, method);
    this.name = 'VSphereTimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/** The server answered something that is not a valid vim25 SOAP response (garbage, HTML, truncated, too big). */
export class VSphereProtocolError extends VSphereError {
  readonly httpStatus: number | undefined;
  constructor(message: string, method: string, httpStatus?: number, options?: { cause?: unknown }) {
    super(message, method, options);
    this.name = 'VSphereProtocolError';
    this.httpStatus = httpStatus;
  }
}

/** A lookup found no VM (or found several where one was required: see `ambiguous`). */
export class VSphereNotFoundError extends VSphereError {
  readonly ambiguous: boolean;
  constructor(message: string, method: string, ambiguous = false) {
    super(message, method);
    this.name = 'VSphereNotFoundError';
    this.ambiguous = ambiguous;
  }
}

export function isFault(err: unknown, faultName?: string): err is VSphereFault {
  return err instanceof VSphereFault && (faultName === undefined || err.faultName === faultName);
}
