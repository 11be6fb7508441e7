/**
 * The one UUID rule: what a VMM's spec.vm.uuid and a sim inventory's uuid
 * accept. Dashes are optional because libvirt's virUUIDParse skips them and
 * vSphere users paste both forms; case does not matter. The regex also goes
 * into the CRD's OpenAPI pattern, so the API server refuses what we refuse.
 */

export const UUID_RE = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

/** The lower-case, dashed form of a UUID, or undefined when `text` is not one. */
export function canonicalUuid(text: string): string | undefined {
  if (!UUID_RE.test(text)) return undefined;
  const h = text.replace(/-/g, '').toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
