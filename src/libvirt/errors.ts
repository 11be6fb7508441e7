// One error type for everything the client reports, remote or local, so that
// callers can branch on `code`/`domain` exactly as they would with libvirt's
// virError, and on `reason` for failures that never reached the daemon.

import { ErrorCode, ErrorDomain, ErrorLevel, errorCodeName, errorDomainName } from './procedures.ts';
import type { RemoteErrorPayload } from './procedures.ts';

/**
 * - `remote`: the daemon answered with an error (code/domain/message are libvirt's own)
 * - `timeout`: no answer within the call's deadline
 * - `closed`: the connection went away (or was closed) before the answer
 * - `protocol`: the peer sent something that is not valid libvirt RPC
 * - `connect`: the transport could not be set up (socket, TLS, ssh)
 * - `uri`: the URI is not one libvirt would accept
 */
export type LibvirtErrorReason = 'remote' | 'timeout' | 'closed' | 'protocol' | 'connect' | 'uri';

export interface LibvirtErrorInit {
  code: number;
  domain: number;
  level?: number;
  message: string;
  procedure?: string | undefined;
  reason: LibvirtErrorReason;
  str1?: string | null;
  str2?: string | null;
  str3?: string | null;
  int1?: number;
  int2?: number;
  cause?: unknown;
}

export class LibvirtError extends Error {
  /** virErrorNumber, e.g. 55 (VIR_ERR_OPERATION_INVALID). */
  readonly code: number;
  /** virErrorDomain, e.g. 10 (VIR_FROM_QEMU). */
  readonly domain: number;
  /** virErrorLevel: 1 warning, 2 error. */
  readonly level: number;
  /** The message exactly as libvirt produced it (without our prefix). */
  readonly libvirtMessage: string;
  /** REMOTE_PROC_... name of the call, when the error belongs to one. */
  readonly procedure: string | undefined;
  readonly reason: LibvirtErrorReason;
  readonly str1: string | null;
  readonly str2: string | null;
  readonly str3: string | null;
  readonly int1: number;
  readonly int2: number;

  constructor(init: LibvirtErrorInit) {
    const where = init.procedure ? `${init.procedure}: ` : '';
    super(`${where}${init.message}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'LibvirtError';
    this.code = init.code;
    this.domain = init.domain;
    this.level = init.level ?? ErrorLevel.ERROR;
    this.libvirtMessage = init.message;
    this.procedure = init.procedure;
    this.reason = init.reason;
    this.str1 = init.str1 ?? null;
    this.str2 = init.str2 ?? null;
    this.str3 = init.str3 ?? null;
    this.int1 = init.int1 ?? 0;
    this.int2 = init.int2 ?? 0;
  }

  /** e.g. VIR_ERR_OPERATION_INVALID */
  get codeName(): string {
    return errorCodeName(this.code);
  }

  /** e.g. VIR_FROM_QEMU */
  get domainName(): string {
    return errorDomainName(this.domain);
  }

  get isRemote(): boolean {
    return this.reason === 'remote';
  }

  static fromRemote(e: RemoteErrorPayload, procedure: string): LibvirtError {
    return new LibvirtError({
      code: e.code,
      domain: e.domain,
      level: e.level,
      message: e.message ?? `${errorCodeName(e.code)} (no message)`,
      procedure,
      reason: 'remote',
      str1: e.str1,
      str2: e.str2,
      str3: e.str3,
      int1: e.int1,
      int2: e.int2,
    });
  }

  static local(reason: Exclude<LibvirtErrorReason, 'remote'>, message: string, procedure?: string, cause?: unknown): LibvirtError {
    const code =
      reason === 'timeout' ? ErrorCode.OPERATION_TIMEOUT : reason === 'uri' ? ErrorCode.INVALID_ARG : reason === 'connect' ? ErrorCode.SYSTEM_ERROR : ErrorCode.RPC;
    const domain = reason === 'uri' ? ErrorDomain.URI : ErrorDomain.RPC;
    return new LibvirtError({ code, domain, message, procedure, reason, cause });
  }
}
