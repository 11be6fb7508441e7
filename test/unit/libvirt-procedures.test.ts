/**
 * Drift check of src/libvirt/procedures.ts against libvirt's own protocol
 * definition. libvirt never renumbers a procedure (remote_protocol.x: numbers
 * are part of the wire ABI), so a number here that differs from libvirt's is
 * a bug that only shows as "unknown procedure" or, worse, a different call.
 *
 * VERIFIED below is our own transcription of the numbers we use, read from
 * src/remote/remote_protocol.x (enum remote_procedure; REMOTE_PROGRAM and
 * REMOTE_PROTOCOL_VERSION just above it) in a libvirt tree whose enum runs to
 * REMOTE_PROC_DOMAIN_EVENT_LEASE_CHANGE = 449 (github.com/zippy2/libvirt at
 * 57a10ecc008b), and src/rpc/virkeepaliveprotocol.x (libvirt/libvirt at
 * 4acd358a76d1) for keepalive. libvirt's
 * file is not copied into this repository.
 *
 * A procedure added to Proc without an entry here fails the test: look its
 * number up in remote_protocol.x and add it to VERIFIED in the same change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
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

/** REMOTE_PROC_<name> = <number>, as remote_protocol.x has them. */
const VERIFIED: Readonly<Record<string, number>> = {
  REMOTE_PROC_CONNECT_OPEN: 1,
  REMOTE_PROC_CONNECT_CLOSE: 2,
  REMOTE_PROC_CONNECT_GET_TYPE: 3,
  REMOTE_PROC_CONNECT_GET_VERSION: 4,
  REMOTE_PROC_NODE_GET_INFO: 6,
  REMOTE_PROC_CONNECT_GET_CAPABILITIES: 7,
  REMOTE_PROC_DOMAIN_CREATE: 9,
  REMOTE_PROC_DOMAIN_CREATE_XML: 10,
  REMOTE_PROC_DOMAIN_DEFINE_XML: 11,
  REMOTE_PROC_DOMAIN_DESTROY: 12,
  REMOTE_PROC_DOMAIN_GET_XML_DESC: 14,
  REMOTE_PROC_DOMAIN_GET_INFO: 16,
  REMOTE_PROC_DOMAIN_GET_MAX_MEMORY: 17,
  REMOTE_PROC_DOMAIN_LOOKUP_BY_ID: 22,
  REMOTE_PROC_DOMAIN_LOOKUP_BY_NAME: 23,
  REMOTE_PROC_DOMAIN_LOOKUP_BY_UUID: 24,
  REMOTE_PROC_DOMAIN_SET_MAX_MEMORY: 30,
  REMOTE_PROC_DOMAIN_SET_MEMORY: 31,
  REMOTE_PROC_DOMAIN_UNDEFINE: 35,
  REMOTE_PROC_CONNECT_GET_HOSTNAME: 59,
  REMOTE_PROC_CONNECT_SUPPORTS_FEATURE: 60,
  REMOTE_PROC_AUTH_LIST: 66,
  REMOTE_PROC_AUTH_POLKIT: 70,
  REMOTE_PROC_NODE_GET_FREE_MEMORY: 102,
  REMOTE_PROC_CONNECT_GET_URI: 110,
  REMOTE_PROC_DOMAIN_IS_ACTIVE: 150,
  REMOTE_PROC_DOMAIN_IS_PERSISTENT: 151,
  REMOTE_PROC_CONNECT_GET_LIB_VERSION: 157,
  REMOTE_PROC_DOMAIN_MEMORY_STATS: 159,
  REMOTE_PROC_DOMAIN_ATTACH_DEVICE_FLAGS: 160,
  REMOTE_PROC_DOMAIN_DETACH_DEVICE_FLAGS: 161,
  REMOTE_PROC_DOMAIN_UPDATE_DEVICE_FLAGS: 174,
  REMOTE_PROC_DOMAIN_CREATE_WITH_FLAGS: 196,
  REMOTE_PROC_DOMAIN_SET_MEMORY_PARAMETERS: 197,
  REMOTE_PROC_DOMAIN_GET_MEMORY_PARAMETERS: 198,
  REMOTE_PROC_DOMAIN_SET_MEMORY_FLAGS: 204,
  REMOTE_PROC_DOMAIN_GET_STATE: 212,
  REMOTE_PROC_NODE_GET_MEMORY_STATS: 228,
  REMOTE_PROC_DOMAIN_UNDEFINE_FLAGS: 231,
  REMOTE_PROC_DOMAIN_DESTROY_FLAGS: 234,
  REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS: 273,
  REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  REMOTE_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  REMOTE_PROC_DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE: 331,
  REMOTE_PROC_DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED: 333,
  REMOTE_PROC_CONNECT_GET_ALL_DOMAIN_STATS: 344,
  REMOTE_PROC_DOMAIN_DEFINE_XML_FLAGS: 350,
  REMOTE_PROC_DOMAIN_EVENT_CALLBACK_DEVICE_ADDED: 354,
  REMOTE_PROC_DOMAIN_DETACH_DEVICE_ALIAS: 392,
  REMOTE_PROC_DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE: 438,
};

test('every procedure we speak has libvirt\'s number for it (remote_protocol.x)', () => {
  const unverified: string[] = [];
  const wrong: string[] = [];
  for (const [key, number] of Object.entries(Proc)) {
    const name = `REMOTE_PROC_${key}`;
    const theirs = VERIFIED[name];
    if (theirs === undefined) unverified.push(`${name} = ${number}`);
    else if (theirs !== number) wrong.push(`${name}: ours ${number}, remote_protocol.x ${theirs}`);
  }
  assert.deepEqual(wrong, [], 'procedure numbers that differ from libvirt\'s');
  assert.deepEqual(unverified, [], 'procedures not checked against remote_protocol.x: look each up there and add it to VERIFIED');
});

test('no two procedures share a number, and procName names each as libvirt does', () => {
  const byNumber = new Map<number, string[]>();
  for (const [key, number] of Object.entries(Proc)) byNumber.set(number, [...(byNumber.get(number) ?? []), key]);
  assert.deepEqual([...byNumber.values()].filter((keys) => keys.length > 1), []);
  for (const [key, number] of Object.entries(Proc)) assert.equal(procName(number), `REMOTE_PROC_${key}`);
  assert.equal(procName(9999), 'REMOTE_PROC_#9999');
});

test('program, version and keepalive numbers (remote_protocol.x, virkeepaliveprotocol.x)', () => {
  assert.equal(REMOTE_PROGRAM, 0x20008086);
  assert.equal(REMOTE_PROTOCOL_VERSION, 1);
  // 'keep' in ASCII; PING = 1, PONG = 2.
  assert.equal(KEEPALIVE_PROGRAM, 0x6b656570);
  assert.equal(KEEPALIVE_PROTOCOL_VERSION, 1);
  assert.equal(KEEPALIVE_PROC_PING, 1);
  assert.equal(KEEPALIVE_PROC_PONG, 2);
});
