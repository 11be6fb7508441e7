// Request building (escaping, schema order) and response/fault decoding of the vSphere client.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configSpecXml, containerViewObjectSpecXml, escapeEntityName, memoryAllocationXml, parseMemoryAllocation } from '../../src/vsphere/client.ts';
import { VSphereFault, VSphereProtocolError } from '../../src/vsphere/errors.ts';
import { buildRequest, decodeResponse } from '../../src/vsphere/soap.ts';
import { decodeEntities, el, escapeXml, parseXml } from '../../src/vsphere/xml.ts';

const env = (body: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ` +
  `xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;

describe('escaping', () => {
  it('escapes the five XML specials in text and attributes', () => {
    assert.equal(escapeXml(`<&>"'`), '&lt;&amp;&gt;&quot;&apos;');
    assert.equal(el('n', { a: `x"'<` }, 'a&b').xml, '<n a="x&quot;&apos;&lt;">a&amp;b</n>');
  });

  it('keeps non-ASCII, tab and newline; refuses characters XML 1.0 cannot carry', () => {
    assert.equal(escapeXml('é中\t\n'), 'é中\t\n');
    assert.equal(escapeXml('a\rb'), 'a&#13;b');
    assert.throws(() => escapeXml('a\u0000b'), RangeError);
    assert.throws(() => escapeXml('\u0007'), RangeError);
  });

  it('a name survives escape → parse → decode unchanged', () => {
    const nasty = `web <&> "q" 'a' ]]> &amp; &#34; é`;
    const doc = el('r', null, el('name', { t: nasty }, nasty)).xml;
    const n = parseXml(doc);
    assert.equal(n.children[0]!.text, nasty);
    assert.equal(n.children[0]!.attrs.t, nasty);
  });

  it('decodes named and numeric entities (Go writes &#34;), rejects unknown ones', () => {
    assert.equal(decodeEntities('&lt;&#34;&#x27;&amp;lt;'), `<"'&lt;`);
    assert.throws(() => decodeEntities('&nbsp;'), /unknown entity/);
    assert.throws(() => decodeEntities('&#xD800;'), /invalid character reference/);
  });
});

describe('entity names', () => {
  it('escapes / \\ and a % that does not start an escape, as vCenter stores names', () => {
    assert.equal(escapeEntityName('a/b\\c 100% x%2fy'), 'a%2fb%5cc 100%25 x%2fy');
    assert.equal(escapeEntityName('plain <&>'), 'plain <&>');
  });
});

describe('request building', () => {
  it('builds an envelope with _this first and the vim25 namespace', () => {
    const doc = buildRequest('Login', { type: 'SessionManager', value: 'SessionManager' }, el('userName', null, 'a<b'));
    assert.match(doc, /^<\?xml version="1\.0" encoding="UTF-8"\?><soapenv:Envelope /);
    assert.ok(doc.includes('<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>a&lt;b</userName></Login>'));
  });

  it('a whole memoryAllocation in schema order (reservation, expandableReservation, limit, shares{shares, level})', () => {
    const x = memoryAllocationXml({ reservation: 1024, limit: -1, shares: { level: 'custom', shares: 2000 }, expandableReservation: false }).xml;
    assert.equal(
      x,
      '<memoryAllocation><reservation>1024</reservation><expandableReservation>false</expandableReservation>' +
        '<limit>-1</limit><shares><shares>2000</shares><level>custom</level></shares></memoryAllocation>',
    );
  });

  it('a config spec puts memoryMB before memoryAllocation and omits what is not given', () => {
    const both = configSpecXml({ memoryMB: 4096, memoryAllocation: { reservation: 0, limit: 2048, shares: { level: 'normal', shares: 0 } } }).xml;
    assert.ok(both.indexOf('<memoryMB>4096</memoryMB>') < both.indexOf('<memoryAllocation>'));
    assert.equal(configSpecXml({ memoryMB: 8 }).xml, '<spec><memoryMB>8</memoryMB></spec>');
  });

  it('refuses non-integer or partial values rather than sending them', () => {
    assert.throws(() => configSpecXml({ memoryMB: 1.5 }), RangeError);
    assert.throws(() => configSpecXml({ memoryMB: 0 }), RangeError);
    assert.throws(() => memoryAllocationXml({ reservation: 1, limit: Number.NaN, shares: { level: 'normal', shares: 0 } }), RangeError);
    // @ts-expect-error a partial allocation is a type error, and a runtime error too
    assert.throws(() => memoryAllocationXml({ reservation: 1 }), RangeError);
  });

  it('a container view traversal is typed (xsi:type="TraversalSpec")', () => {
    const x = containerViewObjectSpecXml({ type: 'ContainerView', value: 'session[1]view-1' }).xml;
    assert.ok(x.includes('<selectSet xsi:type="TraversalSpec"><name>traverseView</name><type>ContainerView</type><path>view</path>'));
  });
});

describe('response and fault decoding', () => {
  it('returns the ${method}Response element', () => {
    const res = decodeResponse('FindByUuid', 200, 'text/xml', env('<FindByUuidResponse xmlns="urn:vim25"><returnval type="VirtualMachine">vm-1</returnval></FindByUuidResponse>'));
    assert.equal(res.children[0]!.attrs.type, 'VirtualMachine');
    assert.equal(res.children[0]!.text, 'vm-1');
  });

  it('decodes a SOAP fault with xsi:type into VSphereFault, keeping faultstring intact', () => {
    const body = env(
      '<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Insufficient resources &lt;host&gt;</faultstring>' +
        '<detail><InsufficientResourcesFaultFault xmlns="urn:vim25" xsi:type="InsufficientResourcesFault"><unreserved>10</unreserved>' +
        '<requested>20</requested></InsufficientResourcesFaultFault></detail></soapenv:Fault>',
    );
    assert.throws(() => decodeResponse('ReconfigVM_Task', 500, 'text/xml', body), (e: unknown) => {
      assert.ok(e instanceof VSphereFault);
      assert.equal(e.faultName, 'InsufficientResourcesFault');
      assert.equal(e.faultString, 'Insufficient resources <host>');
      assert.deepEqual(e.details, { unreserved: '10', requested: '20' });
      assert.equal(e.message, 'ReconfigVM_Task: InsufficientResourcesFault: Insufficient resources <host>');
      return true;
    });
  });

  it('without xsi:type the fault name comes from the element (XFault → X); other prefixes for xsi work', () => {
    const a = env('<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring></faultstring><detail><NotAuthenticatedFault xmlns="urn:vim25"/></detail></soapenv:Fault>');
    assert.throws(() => decodeResponse('X', 500, '', a), (e) => e instanceof VSphereFault && e.faultName === 'NotAuthenticated' && /no message/.test(e.message));
    const b = env('<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>x</faultstring><detail><F xmlns:q="http://www.w3.org/2001/XMLSchema-instance" q:type="InvalidPowerState"><existingState>poweredOff</existingState></F></detail></soapenv:Fault>');
    assert.throws(() => decodeResponse('X', 500, '', b), (e) => e instanceof VSphereFault && e.faultName === 'InvalidPowerState' && e.details.existingState === 'poweredOff');
    const c = env('<soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>bad request</faultstring></soapenv:Fault>');
    assert.throws(() => decodeResponse('X', 500, '', c), (e) => e instanceof VSphereFault && e.faultName === 'Client' && e.faultString === 'bad request');
  });

  it('garbage is a VSphereProtocolError, never a crash', () => {
    const cases: [number, string][] = [
      [200, ''],
      [200, 'hello'],
      [200, '<html><body>502 Bad Gateway</body></html>'],
      [404, '<html><body><h1>Not Found</h1></body></html>'],
      [200, '<a><b></a>'],
      [200, env('<FindByUuidResponse>') ],
      [200, env('<OtherResponse/>')],
      [500, env('')],
      [200, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'],
      [200, '\u0000\u0001binary'],
    ];
    for (const [status, body] of cases) {
      assert.throws(() => decodeResponse('FindByUuid', status, 'text/xml', body), VSphereProtocolError, JSON.stringify(body));
    }
  });

  it('reads a ResourceAllocationInfo, absent fields stay absent', () => {
    const n = parseXml('<val><reservation>5</reservation><limit>-1</limit><shares><shares>1</shares><level>high</level></shares></val>');
    assert.deepEqual(parseMemoryAllocation(n, 'm'), { reservation: 5, limit: -1, shares: { level: 'high', shares: 1 } });
    assert.deepEqual(parseMemoryAllocation(parseXml('<val><reservation>7</reservation></val>'), 'm'), { reservation: 7 });
    assert.throws(() => parseMemoryAllocation(parseXml('<val><limit>lots</limit></val>'), 'm'), VSphereProtocolError);
  });
});
