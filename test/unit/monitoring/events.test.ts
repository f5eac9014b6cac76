// Event derivation, label conditions, templates, stable uuids and retry backoff (pure).
import assert from 'node:assert/strict';
import { deriveEvents } from '../../../controller/monitoring/events.js';
import { labelsMatch } from '../../../controller/monitoring/labels.js';
import { renderTemplate } from '../../../controller/sns/template.js';
import { stableUuid } from '../../../controller/sns/ids.js';
import { DeliveryWorker } from '../../../controller/sns/deliveries.js';
import type { NumberedEvent } from '../../../controller/events/bus.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';

const res = (kind: string, f: Record<string, unknown>): Resource => ({ uuid: 'u1', kind, name: 'n', createDate: 't0', lastOpDate: 't1', ownerAccountUuid: 'acc', tags: [], ...f });
const upd = (r: Resource): NumberedEvent => ({ type: 'resource.updated', kind: r.kind, uuid: r.uuid, ownerAccountUuid: r.ownerAccountUuid, resource: r, time: 't', id: 1 });
const O = { lowCapacityPercent: 10 };

describe('monitoring: event derivation', () => {
  it('VmStateChanged only on a change from a known state', () => {
    const e = upd(res('vm-instance', { state: 'Stopped', hostUuid: 'h1' }));
    const [ev] = deriveEvents(e, { state: 'Running' }, O);
    assert.equal(ev?.eventName, 'VmStateChanged');
    assert.deepEqual(ev?.labels, { VMUuid: 'u1', OldState: 'Running', NewState: 'Stopped', HostUuid: 'h1' });
    assert.equal(ev?.key, 'VmStateChanged|u1|t1|Stopped');
    assert.equal(deriveEvents(e, { state: 'Stopped' }, O).length, 0);
    assert.equal(deriveEvents(e, undefined, O).length, 0);
  });

  it('VmHaStarted when HA started the VM (a new lastHaStartDate), next to its VmStateChanged', () => {
    const e = upd(res('vm-instance', { state: 'Running', hostUuid: 'h2', lastHaStartDate: 't9' }));
    const evs = deriveEvents(e, { state: 'Starting' }, O);
    assert.deepEqual(evs.map((x) => x.eventName), ['VmStateChanged', 'VmHaStarted']);
    assert.deepEqual(evs[1]?.labels, { VMUuid: 'u1', HostUuid: 'h2' });
    assert.equal(evs[1]?.key, 'VmHaStarted|u1|t9');
    assert.equal(evs[1]?.namespace, 'ZStack/VM');
    assert.equal(deriveEvents(e, { state: 'Running', ha: 't9' }, O).length, 0, 'the same HA start once');
  });

  it('HostStatusChanged between Connected and Disconnected', () => {
    assert.equal(deriveEvents(upd(res('host', { status: 'Disconnected' })), { status: 'Connected' }, O)[0]?.eventName, 'HostStatusChanged');
    assert.equal(deriveEvents(upd(res('host', { status: 'Connected' })), { status: 'Disconnected' }, O)[0]?.labels.NewStatus, 'Connected');
    assert.equal(deriveEvents(upd(res('host', { status: 'Connected' })), { status: 'Connecting' }, O).length, 0, 'first connect is not a change');
  });

  it('PrimaryStorageLowCapacity when crossing below the threshold', () => {
    const low = upd(res('primary-storage', { totalCapacity: 100, availableCapacity: 5 }));
    assert.equal(deriveEvents(low, { percent: 50 }, O)[0]?.labels.AvailableCapacityInPercent, '5');
    assert.equal(deriveEvents(low, { percent: 8 }, O).length, 0, 'already low');
  });

  it('JobFailed for failed jobs only', () => {
    const job = { uuid: 'j1', type: 'vm-instances.start', state: 'Failed' as const, accountUuid: 'acc', error: { code: 'AGENT_ERROR', message: 'boom' }, createDate: 't', lastOpDate: 't' };
    const e: NumberedEvent = { type: 'job.finished', accountUuid: 'acc', job, time: 't', id: 2 };
    assert.deepEqual(deriveEvents(e, undefined, O)[0]?.labels, { JobUuid: 'j1', JobType: 'vm-instances.start', ErrorCode: 'AGENT_ERROR' });
    assert.equal(deriveEvents({ ...e, job: { ...job, state: 'Succeeded' } }, undefined, O).length, 0);
  });
});

describe('monitoring: labels, templates, ids, backoff', () => {
  it('label conditions: Equal, NotEqual, whole-value Regex', () => {
    const l = { VMUuid: 'abc', NewState: 'Stopped' };
    assert.ok(labelsMatch([{ key: 'VMUuid', value: 'abc' }], l));
    assert.ok(!labelsMatch([{ key: 'VMUuid', op: 'NotEqual', value: 'abc' }], l));
    assert.ok(labelsMatch([{ key: 'NewState', op: 'Regex', value: 'Stop.*' }], l));
    assert.ok(!labelsMatch([{ key: 'NewState', op: 'Regex', value: 'Stop' }], l), 'anchored');
    assert.ok(!labelsMatch([{ key: 'Missing', op: 'Regex', value: '.*' }], l));
    assert.ok(labelsMatch([], l));
  });

  it('templates substitute known variables and keep unknown ones', () => {
    assert.equal(renderTemplate('${ALARM_NAME} is ${ALARM_CURRENT_STATUS} ${NOPE}', { ALARM_NAME: 'cpu', ALARM_CURRENT_STATUS: 'Alarm' }), 'cpu is Alarm ${NOPE}');
  });

  it('stable uuids are uuid-shaped and deterministic', () => {
    assert.equal(stableUuid('a'), stableUuid('a'));
    assert.notEqual(stableUuid('a'), stableUuid('b'));
    assert.match(stableUuid('a'), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('retry backoff doubles up to the cap', () => {
    const w = new DeliveryWorker({} as InventoryStore, 'c', { backoffMs: 100, maxBackoffMs: 500 });
    assert.deepEqual([1, 2, 3, 4, 5].map((a) => w.backoff(a)), [100, 200, 400, 500, 500]);
  });
});

describe('monitoring: the event evaluator with no subscription', () => {
  it('asks the store for subscriptions only while some exist (counted once, +1 per create, again after a delete)', async () => {
    const { openStore } = await import('../../../controller/store/index.js');
    const { EventBus } = await import('../../../controller/events/bus.js');
    const { observedStore, storeOpCounts } = await import('../../../controller/events/observed-store.js');
    const { EventEvaluator } = await import('../../../controller/monitoring/events.js');
    const raw = await openStore({ backend: 'sqlite', path: ':memory:' });
    try {
      const bus = new EventBus();
      const store = observedStore(raw, bus);
      const ev = new EventEvaluator(store, bus, () => 'admin', () => undefined);
      await ev.start();
      const lists = (): number => storeOpCounts(store)!['list:event-subscription'] ?? 0;
      const [raised] = deriveEvents(upd(res('vm-instance', { state: 'Stopped' })), { state: 'Running' }, O);
      assert.equal(await ev.dispatch(raised!), 0);
      assert.equal(lists(), 1, 'one count');
      for (let i = 0; i < 5; i++) await ev.dispatch(raised!);
      assert.equal(lists(), 1, 'none while there is no subscription');
      const sub = await store.create(res('event-subscription', { uuid: 's1', eventName: 'VmStateChanged', state: 'Enabled', actions: [] }));
      await ev.dispatch(raised!);
      assert.equal(lists(), 2, 'a created subscription is looked for at once');
      await store.delete(sub.uuid);
      await ev.dispatch(raised!);
      assert.equal(lists(), 3, 'counted again after a delete');
      await ev.dispatch(raised!);
      assert.equal(lists(), 3);
      ev.stop();
    } finally {
      await raw.close();
    }
  });
});
