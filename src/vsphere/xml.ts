// XML for the vim25 SOAP API: our own request builder (escaping done here, nowhere else) and a
// response reader over fast-xml-parser that yields a small, order-preserving node tree with local
// names. Entities are decoded here too (the parser is told not to), so `&#34;` from Go's encoder
// and `&quot;` from vCenter decode alike.
import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** Escapes text content and attribute values (both quote kinds, so it is safe in either). */
export function escapeXml(value: string): string {
  let out = '';
  for (const ch of value) {
    switch (ch) {
      case '&': out += '&amp;'; break;
      case '<': out += '&lt;'; break;
      case '>': out += '&gt;'; break;
      case '"': out += '&quot;'; break;
      case "'": out += '&apos;'; break;
      case '\r': out += '&#13;'; break; // keep CR from being normalized away by the peer's parser
      default: {
        const cp = ch.codePointAt(0)!;
        // XML 1.0 forbids most C0 controls even as references: refuse rather than send garbage.
        if (cp < 0x20 && cp !== 0x09 && cp !== 0x0a) {
          throw new RangeError(`character U+${cp.toString(16).padStart(4, '0')} cannot be represented in XML 1.0`);
        }
        if (cp === 0xfffe || cp === 0xffff) throw new RangeError('character not allowed in XML 1.0');
        out += ch;
      }
    }
  }
  return out;
}

/** A piece of request XML that is already serialized (and therefore already escaped). */
export class Raw {
  readonly xml: string;
  constructor(xml: string) {
    this.xml = xml;
  }
}

export type Child = Raw | string | number | bigint | boolean | null | undefined | Child[];

/**
 * Builds one element. Strings, numbers and booleans become escaped text; `Raw` is inserted as is;
 * null/undefined children are dropped (an absent optional field); arrays are flattened.
 */
export function el(name: string, attrs: Record<string, string | undefined> | null, ...children: Child[]): Raw {
  let open = `<${name}`;
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v !== undefined) open += ` ${k}="${escapeXml(v)}"`;
    }
  }
  const body = serializeChildren(children);
  return new Raw(body === '' ? `${open}/>` : `${open}>${body}</${name}>`);
}

function serializeChildren(children: Child[]): string {
  let out = '';
  for (const c of children) {
    if (c === null || c === undefined) continue;
    if (c instanceof Raw) out += c.xml;
    else if (Array.isArray(c)) out += serializeChildren(c);
    else if (typeof c === 'string') out += escapeXml(c);
    else if (typeof c === 'number') {
      if (!Number.isFinite(c)) throw new RangeError(`cannot serialize ${c}`);
      out += String(c);
    } else out += String(c);
  }
  return out;
}

/** An optional leaf: absent when value is undefined/null. */
export function opt(name: string, value: string | number | bigint | boolean | undefined | null): Raw | undefined {
  return value === undefined || value === null ? undefined : el(name, null, value);
}

/** A managed object reference element: `<name type="VirtualMachine">vm-42</name>`. */
export function moRef(name: string, ref: { type: string; value: string }): Raw {
  return el(name, { type: ref.type }, ref.value);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** A parsed element: local name, attributes by qualified name, child elements, text content. */
export interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  cdataPropName: '#cdata',
  commentPropName: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  removeNSPrefix: false,
});

export class XmlSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XmlSyntaxError';
  }
}

const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (m, body: string) => {
    if (body[0] === '#') {
      const cp = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      if (!Number.isFinite(cp) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        throw new XmlSyntaxError(`invalid character reference ${m}`);
      }
      return String.fromCodePoint(cp);
    }
    const named = NAMED[body];
    if (named === undefined) throw new XmlSyntaxError(`unknown entity ${m}`);
    return named;
  });
}

function localName(qname: string): string {
  const i = qname.indexOf(':');
  return i < 0 ? qname : qname.slice(i + 1);
}

type FxpItem = Record<string, unknown>;

function convert(item: FxpItem): XmlNode | string | null {
  let tag: string | undefined;
  for (const k of Object.keys(item)) {
    if (k !== ':@') {
      tag = k;
      break;
    }
  }
  if (tag === undefined) return null;
  if (tag === '#text') return decodeEntities(String(item[tag] ?? ''));
  if (tag === '#cdata') {
    const inner = item[tag] as FxpItem[];
    return inner.map((i) => String(i['#text'] ?? '')).join('');
  }
  const rawAttrs = (item[':@'] ?? {}) as Record<string, unknown>;
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(rawAttrs)) attrs[k] = decodeEntities(String(v));
  const node: XmlNode = { name: localName(tag), attrs, children: [], text: '' };
  const kids = item[tag];
  if (Array.isArray(kids)) {
    for (const k of kids as FxpItem[]) {
      const c = convert(k);
      if (c === null) continue;
      if (typeof c === 'string') node.text += c;
      else node.children.push(c);
    }
  }
  return node;
}

/** Parses a whole document; throws XmlSyntaxError on anything that is not well-formed XML. */
export function parseXml(doc: string): XmlNode {
  const valid = XMLValidator.validate(doc, { allowBooleanAttributes: false });
  if (valid !== true) {
    throw new XmlSyntaxError(`malformed XML: ${valid.err.msg} (line ${valid.err.line})`);
  }
  let items: unknown;
  try {
    items = parser.parse(doc);
  } catch (e) {
    throw new XmlSyntaxError(`malformed XML: ${(e as Error).message}`);
  }
  if (!Array.isArray(items)) throw new XmlSyntaxError('malformed XML: no root element');
  for (const it of items as FxpItem[]) {
    const c = convert(it);
    if (c !== null && typeof c !== 'string') return c;
  }
  throw new XmlSyntaxError('malformed XML: no root element');
}

// Small helpers over XmlNode ------------------------------------------------------------------

export function child(node: XmlNode | undefined, name: string): XmlNode | undefined {
  return node?.children.find((c) => c.name === name);
}

export function childrenNamed(node: XmlNode | undefined, name: string): XmlNode[] {
  return node ? node.children.filter((c) => c.name === name) : [];
}

export function childText(node: XmlNode | undefined, name: string): string | undefined {
  return child(node, name)?.text;
}

/** The xsi:type of an element, by local name of the attribute whatever prefix the peer chose. */
export function xsiType(node: XmlNode): string | undefined {
  for (const [k, v] of Object.entries(node.attrs)) {
    if (k.includes(':') && localName(k) === 'type' && !k.startsWith('xmlns')) return localName(v);
  }
  return undefined;
}
