import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memberLeaseName, ownerOf, shardOf } from '../../src/kube/shards.ts';

test('shardOf is stable and spreads Hypervisors over the shards', () => {
  assert.equal(shardOf('vms', 'kvm-host-a', 16), shardOf('vms', 'kvm-host-a', 16));
  const counts = new Array<number>(8).fill(0);
  for (let i = 0; i < 8000; i++) counts[shardOf(`ns-${i % 7}`, `host-${i}`, 8)]! += 1;
  for (const c of counts) assert.ok(c > 800 && c < 1200, `uneven spread: ${counts.join(',')}`);
});

test('ownerOf gives every shard to exactly one member, about evenly', () => {
  const members = ['replica-a', 'replica-b', 'replica-c'];
  const owned = new Map<string, number>();
  for (let k = 0; k < 300; k++) {
    const o = ownerOf(k, members);
    assert.ok(o && members.includes(o));
    owned.set(o, (owned.get(o) ?? 0) + 1);
  }
  for (const m of members) assert.ok((owned.get(m) ?? 0) > 60, `${m} owns only ${owned.get(m)} of 300`);
  assert.equal(ownerOf(3, []), undefined);
});

test('a member leaving moves only its own shards; a member joining takes shards only for itself', () => {
  const three = ['a', 'b', 'c'];
  const two = ['a', 'b'];
  const four = ['a', 'b', 'c', 'd'];
  for (let k = 0; k < 200; k++) {
    const before = ownerOf(k, three);
    if (before !== 'c') assert.equal(ownerOf(k, two), before, `shard ${k} moved from ${before} although only c left`);
    const after = ownerOf(k, four);
    assert.ok(after === before || after === 'd', `shard ${k} moved from ${before} to ${after}, not to the new member`);
  }
});

test('member Lease names are DNS-1123 and distinct for distinct identities', () => {
  const a = memberLeaseName('vmmem', 'Pod_Name.X_1234abcd');
  const b = memberLeaseName('vmmem', 'pod-name-x-1234abcd');
  assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.ok(a.length <= 63);
  assert.notEqual(a, b);
});
