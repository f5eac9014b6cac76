// Host status/state rules and VM sync decisions.
import assert from 'node:assert/strict';
import { inventoryStateOf, nextStatus, stateTransition, syncDecisions } from '../../../controller/host/states.js';

describe('host/states', () => {
  it('3 misses in a row → Disconnected; an answer → Connected and the count resets', () => {
    let s = { status: 'Connected' as const, misses: 0 };
    let o = nextStatus(s, false, 3);
    assert.deepEqual(o, { ok: false, misses: 1, status: 'Connected' });
    o = nextStatus({ status: 'Connected', misses: o.misses }, false, 3);
    assert.equal(o.status, 'Connected');
    o = nextStatus({ status: 'Connected', misses: o.misses }, false, 3);
    assert.deepEqual(o, { ok: false, misses: 3, status: 'Disconnected' });
    o = nextStatus({ status: 'Disconnected', misses: o.misses }, true, 3);
    assert.deepEqual(o, { ok: true, misses: 0, status: 'Connected' });
    s = { status: 'Connected', misses: 2 };
    assert.equal(nextStatus(s, true, 3).misses, 0);
    assert.equal(nextStatus({ status: 'Connecting', misses: 0 }, false, 1).status, 'Disconnected');
  });

  it('admin state events', () => {
    assert.deepEqual(stateTransition('disable'), { from: ['Enabled'], to: 'Disabled' });
    assert.deepEqual(stateTransition('enable').to, 'Enabled');
    assert.ok(stateTransition('enable').from.includes('Maintenance'));
    assert.deepEqual(stateTransition('maintain'), { from: ['Enabled', 'Disabled'], to: 'Maintenance' });
  });

  it('hypervisor state → inventory state (absent domain = Stopped)', () => {
    assert.equal(inventoryStateOf(undefined), 'Stopped');
    assert.equal(inventoryStateOf('Crashed'), 'Stopped');
    assert.equal(inventoryStateOf('Running'), 'Running');
    assert.equal(inventoryStateOf('Suspended'), 'Paused');
    assert.equal(inventoryStateOf('Stopping'), undefined);
    assert.equal(inventoryStateOf('Unknown'), undefined);
  });

  it('sync corrects stable and Unknown VMs, leaves transitional ones to their workflow', () => {
    const inv = [
      { uuid: 'a', state: 'Unknown' }, // running on host → Running
      { uuid: 'b', state: 'Running' }, // gone from host → Stopped
      { uuid: 'c', state: 'Running' }, // still running → no change
      { uuid: 'd', state: 'Starting' }, // transitional → untouched
      { uuid: 'e', state: 'Stopped' }, // paused on host → Paused
      { uuid: 'f', state: 'Destroyed' }, // recycle bin → untouched
      { uuid: 'g', state: 'Unknown' }, // host says Stopping → wait
    ];
    const onHost = new Map([
      ['a', 'Running'],
      ['c', 'Running'],
      ['d', 'Running'],
      ['e', 'Paused'],
      ['g', 'Stopping'],
    ]);
    assert.deepEqual(syncDecisions(inv, onHost), [
      { vmUuid: 'a', from: 'Unknown', to: 'Running' },
      { vmUuid: 'b', from: 'Running', to: 'Stopped' },
      { vmUuid: 'e', from: 'Stopped', to: 'Paused' },
    ]);
  });
});
