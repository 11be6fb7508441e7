// vSphere vim25 SOAP client: knows nothing of vmmem's resources (DESIGN §5).
export * from './client.ts';
export * from './errors.ts';
export { SESSION_COOKIE } from './transport.ts';
export type { TransportOptions } from './transport.ts';
export { escapeXml } from './xml.ts';
