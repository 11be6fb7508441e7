/**
 * Drift check of src/libvirt/procedures.ts against libvirt's own protocol
 * definition. libvirt never renumbers a procedure (remote_protocol.x: numbers
 * are part of the wire ABI), so a number here that differs from libvirt's is
 * a bug that only shows as "unknown procedure" or, worse, a different call.
 *
 * The reference is test/fixtures/libvirt/remote-procedures.txt: our own
 * extract of `NAME = number` facts from libvirt's remote_protocol.x and
 * virkeepaliveprotocol.x, with the libvirt commits they were read at (its
 * header). The test runs offline; libvirt's files are not copied here.
 *
 * A procedure added to Proc without a line in the extract fails the test:
 * look its number up in remote_protocol.x and add the line, with its source,
 * in the same change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  KEEPALIVE_PROC_PING,
  KEEPALIVE_PROC_PONG,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  Proc,
  procName,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
} from '../../src/libvirt/procedures.ts';

const EXTRACT = new URL('../fixtures/libvirt/remote-procedures.txt', import.meta.url);

/**
 * The extract's facts by name. Strict on purpose: a line that is neither a
 * comment, blank nor `NAME = number` (decimal or 0x hex), or a name given
 * twice, is an error rather than a fact silently skipped.
 */
function readExtract(): Map<string, number> {
  const facts = new Map<string, number>();
  readFileSync(EXTRACT, 'utf8').split('\n').forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const m = /^([A-Z][A-Z0-9_]*) = (0x[0-9a-f]+|[0-9]+)$/.exec(line);
    if (!m) throw new Error(`remote-procedures.txt:${i + 1}: not "NAME = number": ${JSON.stringify(line)}`);
    const [, name, value] = m as unknown as [string, string, string];
    if (facts.has(name)) throw new Error(`remote-procedures.txt:${i + 1}: ${name} given twice`);
    facts.set(name, Number(value));
  });
  return facts;
}

const facts = readExtract();
const extractProcs = new Map([...facts].filter(([name]) => name.startsWith('REMOTE_PROC_')));

function fact(name: string): number {
  const v = facts.get(name);
  if (v === undefined) throw new Error(`remote-procedures.txt has no ${name}`);
  return v;
}

test('every procedure we speak has libvirt\'s number for it (remote_protocol.x extract)', () => {
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [key, number] of Object.entries(Proc)) {
    const name = `REMOTE_PROC_${key}`;
    const theirs = extractProcs.get(name);
    if (theirs === undefined) missing.push(`${name} = ${number}`);
    else if (theirs !== number) wrong.push(`${name}: ours ${number}, remote_protocol.x ${theirs}`);
  }
  assert.deepEqual(wrong, [], 'procedure numbers that differ from libvirt\'s');
  assert.deepEqual(missing, [], 'procedures not in test/fixtures/libvirt/remote-procedures.txt: look each up in remote_protocol.x and add it');
});

test('the extract holds only procedures we speak, each number once', () => {
  // Kept minimal so it stays reviewable: a line for a procedure Proc dropped is stale.
  const ours = new Set(Object.keys(Proc).map((k) => `REMOTE_PROC_${k}`));
  assert.deepEqual([...extractProcs.keys()].filter((name) => !ours.has(name)), []);
  const numbers = [...extractProcs.values()];
  assert.equal(new Set(numbers).size, numbers.length, 'two extract lines share a procedure number');
});

test('no two procedures share a number, and procName names each as libvirt does', () => {
  const byNumber = new Map<number, string[]>();
  for (const [key, number] of Object.entries(Proc)) byNumber.set(number, [...(byNumber.get(number) ?? []), key]);
  assert.deepEqual([...byNumber.values()].filter((keys) => keys.length > 1), []);
  for (const [key, number] of Object.entries(Proc)) assert.equal(procName(number), `REMOTE_PROC_${key}`);
  assert.equal(procName(9999), 'REMOTE_PROC_#9999');
});

test('program, version and keepalive numbers (remote_protocol.x, virkeepaliveprotocol.x)', () => {
  assert.equal(REMOTE_PROGRAM, fact('REMOTE_PROGRAM'));
  assert.equal(REMOTE_PROTOCOL_VERSION, fact('REMOTE_PROTOCOL_VERSION'));
  assert.equal(KEEPALIVE_PROGRAM, fact('KEEPALIVE_PROGRAM'));
  assert.equal(KEEPALIVE_PROTOCOL_VERSION, fact('KEEPALIVE_PROTOCOL_VERSION'));
  assert.equal(KEEPALIVE_PROC_PING, fact('KEEPALIVE_PROC_PING'));
  assert.equal(KEEPALIVE_PROC_PONG, fact('KEEPALIVE_PROC_PONG'));
});
