// Facts of libvirt's remote protocol (program REMOTE_PROGRAM, version 1):
// procedure numbers, flag values, enums and the struct layouts we use, written
// from libvirt's remote_protocol.x / virnetprotocol.x / public headers.

import type { XdrReader, XdrWriter } from './xdr.ts';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROC_PING = 1;
export const KEEPALIVE_PROC_PONG = 2;

/** virNetMessageType */
export const MessageType = {
  CALL: 0,
  REPLY: 1,
  MESSAGE: 2,
  STREAM: 3,
  CALL_WITH_FDS: 4,
  REPLY_WITH_FDS: 5,
} as const;

/** virNetMessageStatus */
export const MessageStatus = { OK: 0, ERROR: 1, CONTINUE: 2 } as const;

/** Maximum total message size (VIR_NET_MESSAGE_MAX), excluding nothing: libvirt counts the length word too. */
export const MESSAGE_MAX = 16777216 + 4;
export const STRING_MAX = 4194304;
export const UUID_LEN = 16;

/** The remote procedures this client speaks. */
export const Proc = {
  CONNECT_OPEN: 1,
  CONNECT_CLOSE: 2,
  CONNECT_GET_TYPE: 3,
  CONNECT_GET_VERSION: 4,
  NODE_GET_INFO: 6,
  CONNECT_GET_CAPABILITIES: 7,
  DOMAIN_CREATE: 9,
  DOMAIN_CREATE_XML: 10,
  DOMAIN_DEFINE_XML: 11,
  DOMAIN_DESTROY: 12,
  DOMAIN_GET_XML_DESC: 14,
  DOMAIN_GET_INFO: 16,
  DOMAIN_GET_MAX_MEMORY: 17,
  DOMAIN_LOOKUP_BY_ID: 22,
  DOMAIN_LOOKUP_BY_NAME: 23,
  DOMAIN_LOOKUP_BY_UUID: 24,
  DOMAIN_SET_MAX_MEMORY: 30,
  DOMAIN_SET_MEMORY: 31,
  DOMAIN_UNDEFINE: 35,
  CONNECT_GET_HOSTNAME: 59,
  CONNECT_SUPPORTS_FEATURE: 60,
  AUTH_LIST: 66,
  AUTH_POLKIT: 70,
  NODE_GET_FREE_MEMORY: 102,
  CONNECT_GET_URI: 110,
  DOMAIN_IS_ACTIVE: 150,
  DOMAIN_IS_PERSISTENT: 151,
  CONNECT_GET_LIB_VERSION: 157,
  DOMAIN_MEMORY_STATS: 159,
  DOMAIN_ATTACH_DEVICE_FLAGS: 160,
  DOMAIN_DETACH_DEVICE_FLAGS: 161,
  DOMAIN_CREATE_WITH_FLAGS: 196,
  DOMAIN_SET_MEMORY_PARAMETERS: 197,
  DOMAIN_GET_MEMORY_PARAMETERS: 198,
  DOMAIN_SET_MEMORY_FLAGS: 204,
  DOMAIN_UPDATE_DEVICE_FLAGS: 174,
  DOMAIN_GET_STATE: 212,
  NODE_GET_MEMORY_STATS: 228,
  DOMAIN_UNDEFINE_FLAGS: 231,
  DOMAIN_DESTROY_FLAGS: 234,
  CONNECT_LIST_ALL_DOMAINS: 273,
  CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE: 331,
  DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED: 333,
  CONNECT_GET_ALL_DOMAIN_STATS: 344,
  DOMAIN_DEFINE_XML_FLAGS: 350,
  DOMAIN_EVENT_CALLBACK_DEVICE_ADDED: 354,
  DOMAIN_DETACH_DEVICE_ALIAS: 392,
  /** libvirt >= 7.9 */
  DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE: 438,
} as const;
export type ProcName = keyof typeof Proc;

const procNames = new Map<number, string>();
for (const [k, v] of Object.entries(Proc)) procNames.set(v, `REMOTE_PROC_${k}`);
/** `REMOTE_PROC_DOMAIN_SET_MEMORY_FLAGS` for 204, `REMOTE_PROC_#n` when unknown. */
export function procName(proc: number): string {
  return procNames.get(proc) ?? `REMOTE_PROC_#${proc}`;
}

/** remote_auth_type */
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;

/** VIR_DRV_FEATURE_* (driver.h) we ask about. */
export const DrvFeature = { PROGRAM_KEEPALIVE: 10 } as const;

/** virConnectFlags */
export const ConnectFlags = { RO: 1, NO_ALIASES: 2 } as const;

/** virDomainModificationImpact / virDomainMemoryModFlags */
export const DomainAffect = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;
export const DomainMemFlags = { CURRENT: 0, LIVE: 1, CONFIG: 2, MAXIMUM: 4 } as const;

/** virDomainXMLFlags */
export const DomainXmlFlags = { SECURE: 1, INACTIVE: 2, UPDATE_CPU: 4, MIGRATABLE: 8 } as const;

/** virDomainUndefineFlagsValues (subset) */
export const DomainUndefineFlags = { MANAGED_SAVE: 1, SNAPSHOTS_METADATA: 2, NVRAM: 4, KEEP_NVRAM: 8, CHECKPOINTS_METADATA: 16 } as const;

/** virDomainState */
export const DomainState = {
  NOSTATE: 0,
  RUNNING: 1,
  BLOCKED: 2,
  PAUSED: 3,
  SHUTDOWN: 4,
  SHUTOFF: 5,
  CRASHED: 6,
  PMSUSPENDED: 7,
} as const;
export type DomainStateName = Lowercase<keyof typeof DomainState>;

/** virDomainShutoffReason: why a SHUTOFF domain stopped (the reason of virDomainGetState / state.reason). */
export const DomainShutoffReason = {
  UNKNOWN: 0,
  SHUTDOWN: 1,
  DESTROYED: 2,
  /** The hypervisor process died (e.g. QEMU OOM-killed under its memtune hard_limit). */
  CRASHED: 3,
  MIGRATED: 4,
  SAVED: 5,
  FAILED: 6,
  FROM_SNAPSHOT: 7,
  DAEMON: 8,
} as const;
const stateNames: DomainStateName[] = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'];
export function domainStateName(state: number): DomainStateName | `unknown(${number})` {
  return stateNames[state] ?? `unknown(${state})`;
}

/** virDomainEventID (subset) */
export const DomainEventId = { LIFECYCLE: 0, BALLOON_CHANGE: 13, DEVICE_REMOVED: 15, DEVICE_ADDED: 19, MEMORY_DEVICE_SIZE_CHANGE: 26 } as const;

/** virConnectListAllDomainsFlags (subset); virConnectGetAllDomainStatsFlags reuses the filter bits. */
export const ListDomainsFlags = {
  ACTIVE: 1,
  INACTIVE: 2,
  PERSISTENT: 4,
  TRANSIENT: 8,
  RUNNING: 16,
  PAUSED: 32,
  SHUTOFF: 64,
  OTHER: 128,
} as const;

/** virDomainStatsTypes: the stats groups of virConnectGetAllDomainStats. */
export const DomainStatsGroup = {
  STATE: 1,
  CPU_TOTAL: 2,
  BALLOON: 4,
  VCPU: 8,
  INTERFACE: 16,
  BLOCK: 32,
  PERF: 64,
  IOTHREAD: 128,
  MEMORY: 256,
  DIRTYRATE: 512,
  VM: 1024,
} as const;

/** virConnectGetAllDomainStatsFlags beyond the domain filters. */
export const DomainStatsFlags = {
  /** Only what can be had without waiting for a domain job (libvirt >= 4.5). */
  NOWAIT: 1 << 29,
  BACKING: 1 << 30,
  /** Fail instead of silently leaving out a requested group the driver lacks. */
  ENFORCE_STATS: 0x8000_0000,
} as const;

/** REMOTE_DOMAIN_LIST_MAX */
export const DOMAIN_LIST_MAX = 16384;
/**
 * REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX: typed parameters per stats record
 * (4096 before libvirt 8.x, 262144 in 9.0; we accept the larger).
 */
export const DOMAIN_STATS_PARAMS_MAX = 262144;

/** virDomainEventType */
export const LifecycleEvent = {
  DEFINED: 0,
  UNDEFINED: 1,
  STARTED: 2,
  SUSPENDED: 3,
  RESUMED: 4,
  STOPPED: 5,
  SHUTDOWN: 6,
  PMSUSPENDED: 7,
  CRASHED: 8,
} as const;
export type LifecycleEventName = Lowercase<keyof typeof LifecycleEvent>;
const lifecycleNames: LifecycleEventName[] = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'];
export function lifecycleEventName(ev: number): LifecycleEventName | `unknown(${number})` {
  return lifecycleNames[ev] ?? `unknown(${ev})`;
}

/** virDomainMemoryStatTags -> the names virsh dommemstat prints. */
export const memoryStatTagNames: readonly string[] = [
  'swap_in', // 0
  'swap_out',
  'major_fault',
  'minor_fault',
  'unused',
  'available', // 5
  'actual', // 6: current balloon value (KiB)
  'rss',
  'usable',
  'last_update',
  'disk_caches', // 10
  'hugetlb_pgalloc',
  'hugetlb_pgfail',
];
export const MEMORY_STATS_MAX = 1024;

/** virTypedParameterType */
export const TypedParamType = { INT: 1, UINT: 2, LLONG: 3, ULLONG: 4, DOUBLE: 5, BOOLEAN: 6, STRING: 7 } as const;

/** Memory tunables (virDomainSetMemoryParameters), values in KiB. */
export const MemoryParam = {
  HARD_LIMIT: 'hard_limit',
  SOFT_LIMIT: 'soft_limit',
  MIN_GUARANTEE: 'min_guarantee',
  SWAP_HARD_LIMIT: 'swap_hard_limit',
} as const;
/** VIR_DOMAIN_MEMORY_PARAM_UNLIMITED (INT64_MAX >> 10), in KiB: "no limit". */
export const MEMORY_PARAM_UNLIMITED = 9007199254740991;
export const MEMORY_PARAMETERS_MAX = 16;

/** virErrorNumber names, indexed by code (gaps are undefined). */
const errorCodeList: Record<number, string> = {
  0: 'OK', 1: 'INTERNAL_ERROR', 2: 'NO_MEMORY', 3: 'NO_SUPPORT', 4: 'UNKNOWN_HOST', 5: 'NO_CONNECT',
  6: 'INVALID_CONN', 7: 'INVALID_DOMAIN', 8: 'INVALID_ARG', 9: 'OPERATION_FAILED', 10: 'GET_FAILED',
  11: 'POST_FAILED', 12: 'HTTP_ERROR', 13: 'SEXPR_SERIAL', 14: 'NO_XEN', 15: 'XEN_CALL', 16: 'OS_TYPE',
  17: 'NO_KERNEL', 18: 'NO_ROOT', 19: 'NO_SOURCE', 20: 'NO_TARGET', 21: 'NO_NAME', 22: 'NO_OS',
  23: 'NO_DEVICE', 24: 'NO_XENSTORE', 25: 'DRIVER_FULL', 26: 'CALL_FAILED', 27: 'XML_ERROR',
  28: 'DOM_EXIST', 29: 'OPERATION_DENIED', 30: 'OPEN_FAILED', 31: 'READ_FAILED', 32: 'PARSE_FAILED',
  33: 'CONF_SYNTAX', 34: 'WRITE_FAILED', 35: 'XML_DETAIL', 36: 'INVALID_NETWORK', 37: 'NETWORK_EXIST',
  38: 'SYSTEM_ERROR', 39: 'RPC', 40: 'GNUTLS_ERROR', 41: 'WAR_NO_NETWORK', 42: 'NO_DOMAIN', 43: 'NO_NETWORK',
  44: 'INVALID_MAC', 45: 'AUTH_FAILED', 46: 'INVALID_STORAGE_POOL', 47: 'INVALID_STORAGE_VOL',
  48: 'WAR_NO_STORAGE', 49: 'NO_STORAGE_POOL', 50: 'NO_STORAGE_VOL', 51: 'WAR_NO_NODE',
  52: 'INVALID_NODE_DEVICE', 53: 'NO_NODE_DEVICE', 54: 'NO_SECURITY_MODEL', 55: 'OPERATION_INVALID',
  56: 'WAR_NO_INTERFACE', 57: 'NO_INTERFACE', 58: 'INVALID_INTERFACE', 59: 'MULTIPLE_INTERFACES',
  60: 'WAR_NO_NWFILTER', 61: 'INVALID_NWFILTER', 62: 'NO_NWFILTER', 63: 'BUILD_FIREWALL',
  64: 'WAR_NO_SECRET', 65: 'INVALID_SECRET', 66: 'NO_SECRET', 67: 'CONFIG_UNSUPPORTED',
  68: 'OPERATION_TIMEOUT', 69: 'MIGRATE_PERSIST_FAILED', 70: 'HOOK_SCRIPT_FAILED',
  71: 'INVALID_DOMAIN_SNAPSHOT', 72: 'NO_DOMAIN_SNAPSHOT', 73: 'INVALID_STREAM', 74: 'ARGUMENT_UNSUPPORTED',
  75: 'STORAGE_PROBE_FAILED', 76: 'STORAGE_POOL_BUILT', 77: 'SNAPSHOT_REVERT_RISKY', 78: 'OPERATION_ABORTED',
  79: 'AUTH_CANCELLED', 80: 'NO_DOMAIN_METADATA', 81: 'MIGRATE_UNSAFE', 82: 'OVERFLOW',
  83: 'BLOCK_COPY_ACTIVE', 84: 'OPERATION_UNSUPPORTED', 85: 'SSH', 86: 'AGENT_UNRESPONSIVE',
  87: 'RESOURCE_BUSY', 88: 'ACCESS_DENIED', 89: 'DBUS_SERVICE', 90: 'STORAGE_VOL_EXIST',
  91: 'CPU_INCOMPATIBLE', 92: 'XML_INVALID_SCHEMA', 93: 'MIGRATE_FINISH_OK', 94: 'AUTH_UNAVAILABLE',
  95: 'NO_SERVER', 96: 'NO_CLIENT', 97: 'AGENT_UNSYNCED', 98: 'LIBSSH', 99: 'DEVICE_MISSING',
  100: 'INVALID_NWFILTER_BINDING', 101: 'NO_NWFILTER_BINDING', 102: 'INVALID_DOMAIN_CHECKPOINT',
  103: 'NO_DOMAIN_CHECKPOINT', 104: 'NO_DOMAIN_BACKUP', 105: 'INVALID_NETWORK_PORT',
  106: 'NETWORK_PORT_EXIST', 107: 'NO_NETWORK_PORT', 108: 'NO_HOSTNAME', 109: 'CHECKPOINT_INCONSISTENT',
  110: 'MULTIPLE_DOMAINS',
};
/** The virErrorNumber constants we refer to by name. */
export const ErrorCode = {
  INTERNAL_ERROR: 1,
  NO_SUPPORT: 3,
  INVALID_ARG: 8,
  OPERATION_FAILED: 9,
  XML_ERROR: 27,
  OPERATION_DENIED: 29,
  SYSTEM_ERROR: 38,
  RPC: 39,
  NO_DOMAIN: 42,
  AUTH_FAILED: 45,
  OPERATION_INVALID: 55,
  CONFIG_UNSUPPORTED: 67,
  OPERATION_TIMEOUT: 68,
  ARGUMENT_UNSUPPORTED: 74,
  OPERATION_UNSUPPORTED: 84,
  ACCESS_DENIED: 88,
  AUTH_UNAVAILABLE: 94,
} as const;

const errorDomainList: readonly string[] = [
  'NONE', 'XEN', 'XEND', 'XENSTORE', 'SEXPR', 'XML', 'DOM', 'RPC', 'PROXY', 'CONF', 'QEMU', 'NET', 'TEST',
  'REMOTE', 'OPENVZ', 'XENXM', 'STATS_LINUX', 'LXC', 'STORAGE', 'NETWORK', 'DOMAIN', 'UML', 'NODEDEV',
  'XEN_INOTIFY', 'SECURITY', 'VBOX', 'INTERFACE', 'ONE', 'ESX', 'PHYP', 'SECRET', 'CPU', 'XENAPI',
  'NWFILTER', 'HOOK', 'DOMAIN_SNAPSHOT', 'AUDIT', 'SYSINFO', 'STREAMS', 'VMWARE', 'EVENT', 'LIBXL',
  'LOCKING', 'HYPERV', 'CAPABILITIES', 'URI', 'AUTH', 'DBUS', 'PARALLELS', 'DEVICE', 'SSH', 'LOCKSPACE',
  'INITCTL', 'IDENTITY', 'CGROUP', 'ACCESS', 'SYSTEMD', 'BHYVE', 'CRYPTO', 'FIREWALL', 'POLKIT', 'THREAD',
  'ADMIN', 'LOGGING', 'XENXL', 'PERF', 'LIBSSH', 'RESCTRL', 'FIREWALLD', 'DOMAIN_CHECKPOINT', 'TPM', 'BPF', 'CH',
];
/** The virErrorDomain constants we refer to by name. */
export const ErrorDomain = { NONE: 0, XEN: 1, RPC: 7, QEMU: 10, TEST: 12, REMOTE: 13, DOMAIN: 20, URI: 45, SSH: 50, CGROUP: 54, LIBXL: 41 } as const;

export function errorCodeName(code: number): string {
  const n = errorCodeList[code];
  return n ? `VIR_ERR_${n}` : `VIR_ERR_#${code}`;
}
export function errorDomainName(domain: number): string {
  const n = errorDomainList[domain];
  return n ? `VIR_FROM_${n}` : `VIR_FROM_#${domain}`;
}

/** virErrorLevel */
export const ErrorLevel = { NONE: 0, WARNING: 1, ERROR: 2 } as const;

// ---------------------------------------------------------------- structs

/** remote_nonnull_domain: the handle every domain call carries. */
export interface DomainRef {
  readonly name: string;
  /** Canonical lower-case 8-4-4-4-12 form. */
  readonly uuid: string;
  /** Hypervisor id while running, -1 otherwise. */
  readonly id: number;
}

const HEX = '0123456789abcdef';
export function uuidToString(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += '-';
    const v = b[i] ?? 0;
    s += HEX[v >> 4]! + HEX[v & 15]!;
  }
  return s;
}

const UUID_RE = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;
export function uuidToBytes(uuid: string): Buffer {
  if (!UUID_RE.test(uuid)) throw new TypeError(`invalid UUID '${uuid}': expected 32 hex digits (8-4-4-4-12)`);
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

export function writeDomain(w: XdrWriter, d: DomainRef): void {
  w.string(d.name, STRING_MAX);
  w.ensure(UUID_LEN);
  // Write the 16 UUID bytes straight from the hex text (no temporary buffer).
  const s = d.uuid;
  let j = 0;
  for (let i = 0; i < 16; i++) {
    if (s.charCodeAt(j) === 45) j++; // '-'
    const hi = hexVal(s.charCodeAt(j));
    const lo = hexVal(s.charCodeAt(j + 1));
    if (hi < 0 || lo < 0) throw new TypeError(`invalid UUID '${s}' in domain handle for '${d.name}'`);
    w.buf[w.pos++] = (hi << 4) | lo;
    j += 2;
  }
  w.int(d.id);
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

export function readDomain(r: XdrReader): DomainRef {
  const name = r.string(STRING_MAX);
  if (r.remaining < UUID_LEN) r.opaqueFixed(UUID_LEN); // throws the truncation error
  const uuid = uuidToString(r.buf.subarray(r.pos, r.pos + UUID_LEN));
  r.pos += UUID_LEN;
  const id = r.int();
  return { name, uuid, id };
}

/** A virTypedParameter value as the wire carries it. */
export type TypedParamValue =
  | { type: 'int'; value: number }
  | { type: 'uint'; value: number }
  | { type: 'llong'; value: bigint }
  | { type: 'ullong'; value: bigint }
  | { type: 'double'; value: number }
  | { type: 'boolean'; value: boolean }
  | { type: 'string'; value: string };
export interface TypedParam {
  field: string;
  value: TypedParamValue;
}

export function writeTypedParam(w: XdrWriter, p: TypedParam): void {
  w.string(p.field, STRING_MAX);
  const v = p.value;
  switch (v.type) {
    case 'int': w.int(TypedParamType.INT).int(v.value); break;
    case 'uint': w.int(TypedParamType.UINT).uint(v.value); break;
    case 'llong': w.int(TypedParamType.LLONG).hyper(v.value); break;
    case 'ullong': w.int(TypedParamType.ULLONG).uhyper(v.value); break;
    case 'double': w.int(TypedParamType.DOUBLE).double(v.value); break;
    case 'boolean': w.int(TypedParamType.BOOLEAN).int(v.value ? 1 : 0); break;
    case 'string': w.int(TypedParamType.STRING).string(v.value, STRING_MAX); break;
  }
}

export function readTypedParam(r: XdrReader): TypedParam {
  const field = r.string(STRING_MAX);
  const t = r.int();
  let value: TypedParamValue;
  switch (t) {
    case TypedParamType.INT: value = { type: 'int', value: r.int() }; break;
    case TypedParamType.UINT: value = { type: 'uint', value: r.uint() }; break;
    case TypedParamType.LLONG: value = { type: 'llong', value: r.hyper() }; break;
    case TypedParamType.ULLONG: value = { type: 'ullong', value: r.uhyper() }; break;
    case TypedParamType.DOUBLE: value = { type: 'double', value: r.double() }; break;
    case TypedParamType.BOOLEAN: value = { type: 'boolean', value: r.int() !== 0 }; break;
    case TypedParamType.STRING: value = { type: 'string', value: r.string(STRING_MAX) }; break;
    default: throw new RangeError(`typed parameter '${field}' has unknown type ${t}`);
  }
  return { field, value };
}

/** remote_error, the payload of a reply whose status is VIR_NET_ERROR. */
export interface RemoteErrorPayload {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  dom: DomainRef | null;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

export function readRemoteError(r: XdrReader): RemoteErrorPayload {
  const code = r.int();
  const domain = r.int();
  const message = r.optional((x) => x.string(STRING_MAX));
  const level = r.int();
  const dom = r.optional(readDomain);
  const str1 = r.optional((x) => x.string(STRING_MAX));
  const str2 = r.optional((x) => x.string(STRING_MAX));
  const str3 = r.optional((x) => x.string(STRING_MAX));
  const int1 = r.int();
  const int2 = r.int();
  // remote_network net (unused): optional { name, uuid }
  r.optional((x) => {
    x.string(STRING_MAX);
    x.opaqueFixed(UUID_LEN);
  });
  return { code, domain, message, level, dom, str1, str2, str3, int1, int2 };
}

export function writeRemoteError(w: XdrWriter, e: RemoteErrorPayload): void {
  const optStr = (x: XdrWriter, s: string) => x.string(s, STRING_MAX);
  w.int(e.code).int(e.domain).optional(e.message, optStr).int(e.level).optional(e.dom, writeDomain);
  w.optional(e.str1, optStr).optional(e.str2, optStr).optional(e.str3, optStr).int(e.int1).int(e.int2).int(0);
}
