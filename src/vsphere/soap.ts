// SOAP 1.1 envelopes for vim25: building requests and decoding responses and faults.
import { VSphereFault, VSphereProtocolError } from './errors.ts';
import type { Child, Raw, XmlNode } from './xml.ts';
import { child, childText, el, moRef, parseXml, XmlSyntaxError, xsiType } from './xml.ts';

export const VIM_NS = 'urn:vim25';
const SOAPENV_NS = 'http://schemas.xmlsoap.org/soap/envelope/';
const XSD_NS = 'http://www.w3.org/2001/XMLSchema';
const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';

export interface MoRef {
  type: string;
  value: string;
}

/** Builds a whole request document for `method` on `self`, with the given (ordered) parameters. */
export function buildRequest(method: string, self: MoRef, ...params: Child[]): string {
  const body = el(method, { xmlns: VIM_NS }, moRef('_this', self), ...params);
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    el(
      'soapenv:Envelope',
      { 'xmlns:soapenv': SOAPENV_NS, 'xmlns:xsd': XSD_NS, 'xmlns:xsi': XSI_NS },
      el('soapenv:Body', null, body),
    ).xml
  );
}

/** `<name xsi:type="Type">...</name>`: for polymorphic fields (selectSet, ...). */
export function typed(name: string, type: string, ...children: Child[]): Raw {
  return el(name, { 'xsi:type': type }, ...children);
}

/** Leaf fields of a fault detail element, recursively flattened with dotted names. */
function faultDetails(node: XmlNode | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (n: XmlNode, prefix: string) => {
    for (const c of n.children) {
      const key = prefix + c.name;
      if (c.children.length === 0) {
        out[key] = out[key] === undefined ? c.text : `${out[key]},${c.text}`;
        if (c.attrs.type !== undefined && !c.name.endsWith('Type')) out[`${key}.type`] = c.attrs.type;
      } else if (c.name !== 'faultMessage' && c.name !== 'faultCause') {
        walk(c, `${key}.`);
      }
    }
  };
  if (node) walk(node, '');
  return out;
}

/** The fault type of a `<XFault xsi:type="X">` detail element (or a LocalizedMethodFault's `fault`). */
function faultNameOf(node: XmlNode): string {
  const t = xsiType(node);
  if (t) return t;
  // Without xsi:type, the element is named `${Type}Fault`.
  return node.name.endsWith('Fault') && node.name !== 'Fault' ? node.name.slice(0, -'Fault'.length) : node.name;
}

/** Decodes a `<soapenv:Fault>` element into a VSphereFault. */
export function decodeSoapFault(method: string, fault: XmlNode): VSphereFault {
  const faultCode = childText(fault, 'faultcode') ?? '';
  const faultString = childText(fault, 'faultstring') ?? '';
  const detail = child(fault, 'detail');
  const first = detail?.children[0];
  if (!first) {
    // No typed detail: keep the server's words; name it by the SOAP fault code.
    return new VSphereFault({ method, faultName: faultCode.replace(/^.*:/, '') || 'SoapFault', faultString, faultCode });
  }
  return new VSphereFault({
    method,
    faultName: faultNameOf(first),
    faultString,
    faultCode,
    details: faultDetails(first),
  });
}

/** Decodes a LocalizedMethodFault (a task's `info.error`, a missingSet fault). */
export function decodeLocalizedFault(method: string, lmf: XmlNode, task?: string): VSphereFault {
  const f = child(lmf, 'fault');
  const msg = childText(lmf, 'localizedMessage') ?? '';
  const args: ConstructorParameters<typeof VSphereFault>[0] = {
    method,
    faultName: f ? faultNameOf(f) : 'MethodFault',
    faultString: msg,
    details: f ? faultDetails(f) : {},
  };
  if (task !== undefined) args.task = task;
  return new VSphereFault(args);
}

/**
 * Decodes a response document. Returns the `${method}Response` element, or throws a VSphereFault
 * (SOAP fault) or a VSphereProtocolError (anything else).
 */
export function decodeResponse(method: string, status: number, contentType: string, body: string): XmlNode {
  let root: XmlNode;
  try {
    root = parseXml(body);
  } catch (e) {
    const what = e instanceof XmlSyntaxError ? e.message : String(e);
    throw new VSphereProtocolError(
      `${method}: HTTP ${status} (${contentType || 'no content type'}): not a SOAP response: ${what}`,
      method,
      status,
    );
  }
  if (root.name !== 'Envelope') {
    throw new VSphereProtocolError(`${method}: HTTP ${status}: not a SOAP envelope (root <${root.name}>)`, method, status);
  }
  const b = child(root, 'Body');
  if (!b) throw new VSphereProtocolError(`${method}: HTTP ${status}: SOAP envelope without Body`, method, status);
  const fault = child(b, 'Fault');
  if (fault) throw decodeSoapFault(method, fault);
  if (status < 200 || status >= 300) {
    throw new VSphereProtocolError(`${method}: HTTP ${status} without a SOAP fault`, method, status);
  }
  const res = child(b, `${method}Response`);
  if (!res) {
    const got = b.children[0]?.name ?? 'nothing';
    throw new VSphereProtocolError(`${method}: expected <${method}Response>, got <${got}>`, method, status);
  }
  return res;
}

// Value decoding -------------------------------------------------------------------------------

export function parseMoRef(node: XmlNode | undefined, method: string): MoRef {
  const type = node?.attrs.type;
  if (!node || !type || node.text === '') {
    throw new VSphereProtocolError(`${method}: expected a managed object reference`, method);
  }
  return { type, value: node.text };
}

export function parseIntStrict(text: string | undefined, what: string, method: string): number {
  if (text === undefined || !/^-?\d+$/.test(text.trim())) {
    throw new VSphereProtocolError(`${method}: ${what} is not an integer: ${JSON.stringify(text)}`, method);
  }
  const n = Number(text.trim());
  if (!Number.isSafeInteger(n)) throw new VSphereProtocolError(`${method}: ${what} out of range: ${text}`, method);
  return n;
}

export function parseBigIntStrict(text: string | undefined, what: string, method: string): bigint {
  if (text === undefined || !/^-?\d+$/.test(text.trim())) {
    throw new VSphereProtocolError(`${method}: ${what} is not an integer: ${JSON.stringify(text)}`, method);
  }
  return BigInt(text.trim());
}

export function parseBool(text: string | undefined, what: string, method: string): boolean {
  const t = text?.trim();
  if (t === 'true' || t === '1') return true;
  if (t === 'false' || t === '0') return false;
  throw new VSphereProtocolError(`${method}: ${what} is not a boolean: ${JSON.stringify(text)}`, method);
}
