// Affinity groups (type host): exclusions, plans and refusals, over the pure host ranking.
import assert from 'node:assert/strict';
import type { Resource } from '../../../controller/store/types.js';
import { affinityExclusions, affinityPlan, preferFree, type AffinityGroupView, type Member } from '../../../controller/allocator/affinity.js';
import { noHostError, rankHosts, type HostCandidate, type HostRequest } from '../../../controller/allocator/host.js';

const GiB = 1024 ** 3;
const res = (kind: string, name: string, extra: Record<string, unknown> = {}): Resource =>
  ({ uuid: `${kind}-${name}`, kind, name, createDate: `2026-01-01T00:00:0${name.length % 10}Z`, lastOpDate: '', ownerAccountUuid: 'a', tags: [], ...extra }) as Resource;
const cluster = res('cluster', 'c', { state: 'Enabled', hypervisorType: 'KVM' });
const cand = (name: string): HostCandidate => ({
  host: res('host', name, { state: 'Enabled', status: 'Connected', parentUuid: 'cluster-c', totalCpu: 4, totalMemory: 8 * GiB }),
  cluster,
  usedCpu: 0,
  usedMemory: 0,
  primaryStorageUuids: ['ps'],
  l2NetworkUuids: [],
});
const req: HostRequest = { cpuNum: 1, memorySize: GiB };
const hard: AffinityGroupView = { uuid: 'g1', name: 'web', policy: 'antiHard', state: 'Enabled' };
const soft: AffinityGroupView = { ...hard, policy: 'antiSoft' };
const members: Member[] = [
  { vmUuid: 'v1', vmName: 'web-1', hostUuid: 'host-h1' },
  { vmUuid: 'v2', vmName: 'web-2', hostUuid: 'host-h2' },
  { vmUuid: 'v3', vmName: 'web-3' }, // stopped: holds no host
];
const three = [cand('h1'), cand('h2'), cand('h3')];

describe('controller allocators: affinity groups', () => {
  it('excludes the hosts of the other running members, naming the group and the VMs', () => {
    const ex = affinityExclusions(hard, members, 'v9');
    assert.deepEqual(Object.keys(ex).sort(), ['host-h1', 'host-h2']);
    assert.match(ex['host-h1']!, /affinity group web \(antiHard\) already has web-1 on this host/);
    assert.deepEqual(Object.keys(affinityExclusions(hard, members, 'v1')), ['host-h2'], 'a member does not exclude its own host');
    assert.deepEqual(affinityExclusions({ ...hard, state: 'Disabled' }, members, 'v9'), {}, 'a disabled group constrains nothing');
  });

  it('antiHard: two VMs on two hosts, the third goes to the third host, and with two hosts it is refused with the reason', () => {
    const plan = affinityPlan(req, hard, members, 'v9');
    assert.equal(plan.attempts.length, 1);
    const { ranked } = rankHosts(three, plan.attempts[0]!);
    assert.deepEqual(ranked.map((f) => f.candidate.host.name), ['h3']);
    const two = rankHosts(three.slice(0, 2), plan.attempts[0]!);
    assert.equal(two.ranked.length, 0);
    const err = noHostError(plan.attempts[0]!, two.rejected);
    assert.equal(err.code, 'CAPACITY_EXCEEDED');
    assert.match(err.message, /h1 \(host-h1\): affinity group web \(antiHard\) already has web-1/);
    assert.match(err.message, /h2 \(host-h2\): affinity group web \(antiHard\) already has web-2/);
  });

  it('antiSoft: prefers a free host, falls back to any host when none is free', () => {
    const plan = affinityPlan(req, soft, members, 'v9');
    assert.equal(plan.attempts.length, 2);
    assert.deepEqual(rankHosts(three, plan.attempts[0]!).ranked.map((f) => f.candidate.host.name), ['h3']);
    const two = three.slice(0, 2);
    assert.equal(rankHosts(two, plan.attempts[0]!).ranked.length, 0);
    assert.equal(rankHosts(two, plan.attempts[1]!).ranked.length, 2, 'the fallback has no exclusions');
    assert.deepEqual(preferFree([{ uuid: 'host-h1' }, { uuid: 'host-h3' }], affinityExclusions(soft, members, 'v9')).map((h) => h.uuid), ['host-h3', 'host-h1']);
  });

  it('no group, or a group with no other running member: the request is unchanged', () => {
    assert.deepEqual(affinityPlan(req, undefined, members, 'v9').attempts, [req]);
    assert.deepEqual(affinityPlan(req, hard, [{ vmUuid: 'v9', vmName: 'me', hostUuid: 'host-h1' }], 'v9').attempts, [req]);
  });
});
