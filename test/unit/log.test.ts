import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import {
  CENSOR,
  clearSecrets,
  createLogger,
  redactText,
  registerSecret,
  unregisterSecret,
} from '../../src/controller/log.ts';

function capture(level = 'info'): { log: ReturnType<typeof createLogger>; text: () => string; lines: () => Record<string, unknown>[] } {
  let out = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const log = createLogger({ stream, level, name: 'vmmem' });
  return {
    log,
    text: () => out,
    lines: () =>
      out
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const SECRET = 'hunter2-S3cr3t!';

describe('logging', () => {
  afterEach(() => clearSecrets());

  test('JSON lines with level label, ISO time, name, and level filtering', () => {
    const { log, lines } = capture('info');
    log.debug('hidden');
    log.info({ key: 'ns/vm' }, 'hello');
    const [l] = lines();
    assert.equal(lines().length, 1);
    assert.equal(l?.level, 'info');
    assert.equal(l?.msg, 'hello');
    assert.equal(l?.key, 'ns/vm');
    assert.equal(l?.name, 'vmmem');
    assert.match(String(l?.time), /^\d{4}-\d\d-\d\dT/);
  });

  test('secret fields are redacted by path and by key at any depth', () => {
    const { log, text, lines } = capture();
    log.info(
      {
        password: SECRET,
        token: SECRET,
        credentials: { username: 'admin', password: SECRET },
        conn: { password: SECRET, token: SECRET, authorization: `Bearer ${SECRET}`, cookie: SECRET },
        deep: { a: { b: { password: SECRET, apiKey: SECRET } } },
        secret: { metadata: { name: 's' }, data: { password: Buffer.from(SECRET).toString('base64') }, stringData: { x: SECRET } },
        data: { 'ssh-privatekey': SECRET },
        stringData: { p: SECRET },
        tls: { key: SECRET, crt: 'public' },
        files: { 'tls.key': SECRET, 'ssh-privatekey': SECRET },
        req: { headers: { authorization: SECRET, cookie: SECRET, 'set-cookie': [SECRET], accept: 'json' } },
        list: [{ password: SECRET }],
        authorization: SECRET,
        cookie: SECRET,
      },
      'connecting',
    );
    assert.ok(!text().includes(SECRET), text());
    assert.ok(!text().includes(Buffer.from(SECRET).toString('base64')));
    const l = lines()[0] as Record<string, Record<string, unknown>>;
    assert.equal(l.password, CENSOR);
    assert.equal(l.tls?.crt, 'public');
    assert.equal((l.credentials as unknown) === CENSOR || l.credentials?.username === 'admin', true);
    assert.equal(l.req?.headers && (l.req.headers as Record<string, unknown>).accept, 'json');
  });

  test('child bindings are redacted too', () => {
    const { log, text } = capture();
    log.child({ password: SECRET, conn: { token: SECRET } }).info('child');
    assert.ok(!text().includes(SECRET));
    assert.match(text(), /child/);
  });

  test('registered secret values are scrubbed from messages, errors, stacks and nested strings', () => {
    const { log, text, lines } = capture();
    registerSecret(SECRET);
    const err = new Error(`login failed for admin:${SECRET}@esx.example`);
    (err as Error & { body?: unknown }).body = { message: `bad password ${SECRET}` };
    log.error({ err, uri: `esx://admin:${encodeURIComponent(SECRET)}@host/sdk` }, `could not connect with ${SECRET}`);
    log.warn('formatted %s', SECRET);
    log.error(new Error(`top-level ${SECRET}`));
    log.error({ err: new Error(`merged ${SECRET}`) });
    log.info({ nested: { cause: new Error(SECRET), msg: `x${SECRET}y` } }, 'nested');
    const out = text();
    assert.ok(!out.includes(SECRET), out);
    assert.ok(!out.includes(encodeURIComponent(SECRET)), out);
    const [first] = lines() as Record<string, Record<string, unknown>>[];
    assert.match(String(first?.msg), /could not connect with \[REDACTED\]/);
    assert.match(String(first?.err?.message), /admin:\[REDACTED\]@esx/);
    assert.match(String(first?.err?.stack), /\[REDACTED\]/);
    assert.equal(first?.err?.type, 'Error');
    assert.equal(lines()[2]?.msg, `top-level ${CENSOR}`);
    assert.equal(lines()[3]?.msg, `merged ${CENSOR}`);
  });

  test('redactText', () => {
    assert.equal(redactText(`a ${SECRET} b`), `a ${SECRET} b`, 'nothing registered');
    registerSecret(SECRET);
    registerSecret('abc'); // too short: ignored
    registerSecret(Buffer.from('sess-token-123'));
    registerSecret(undefined);
    assert.equal(redactText(`a ${SECRET} b ${SECRET}`), `a ${CENSOR} b ${CENSOR}`);
    assert.equal(redactText('abc sess-token-123'), `abc ${CENSOR}`);
    assert.equal(redactText(Buffer.from(SECRET).toString('base64')), CENSOR);
    assert.equal(redactText('a.b*c'), 'a.b*c', 'regex metacharacters are literal');
    unregisterSecret(SECRET);
    assert.equal(redactText(SECRET), SECRET);
  });
});
