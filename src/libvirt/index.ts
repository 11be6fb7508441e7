// Public surface of the libvirt remote-protocol client.
export { LibvirtClient, statNumber } from './client.ts';
export type {
  BalloonChangeEvent,
  ConnectOptions,
  DeviceEvent,
  DomainEvent,
  DomainStatsRecord,
  DomainInfo,
  DomainStateInfo,
  LifecycleEvent,
  MemoryDeviceSizeChangeEvent,
  MemoryParamName,
  MemoryParameters,
  MemoryParametersInput,
  MemoryStats,
  NodeInfo,
  Subscription,
} from './client.ts';
export { LibvirtError } from './errors.ts';
export type { LibvirtErrorReason } from './errors.ts';
export { parseDomainXml, toKiB, virtioMemResizeXml, virtioMemUpdateXml } from './domxml.ts';
export type { DomainXmlInfo, MemoryDeviceInfo } from './domxml.ts';
export {
  DOMAIN_LIST_MAX,
  DomainAffect,
  DomainEventId,
  DomainMemFlags,
  DomainShutoffReason,
  DomainState,
  DomainStatsFlags,
  DomainStatsGroup,
  DomainUndefineFlags,
  DomainXmlFlags,
  ErrorCode,
  ErrorDomain,
  LifecycleEvent as LifecycleEventType,
  ListDomainsFlags,
  MEMORY_PARAM_UNLIMITED,
  MemoryParam,
  Proc,
  domainStateName,
  errorCodeName,
  errorDomainName,
  lifecycleEventName,
  procName,
} from './procedures.ts';
export type { DomainRef, TypedParam, TypedParamValue } from './procedures.ts';
export { RpcConnection } from './rpc.ts';
export type { RpcOptions } from './rpc.ts';
export { openTransport, sshArgs, sshRemoteCommand } from './transport.ts';
export type { SshOptions, TlsOptions, TransportOptions } from './transport.ts';
export { parseUri, localSocketCandidates } from './uri.ts';
export type { LibvirtUri, Transport } from './uri.ts';
export { XdrError, XdrReader, XdrWriter } from './xdr.ts';
