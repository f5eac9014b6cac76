// The event-token registry: one token per host (a new one replaces the old), unregister forgets
// only that host, and a token given to one host then to another belongs to the second.
import assert from 'node:assert/strict';
import { AgentRegistry } from '../../../controller/events/agent-events.js';

describe('agent event tokens', () => {
  it('one token per host: a new one replaces the old, unregister forgets only that host', () => {
    const r = new AgentRegistry();
    const a1 = r.register('host-a');
    const b = r.register('host-b');
    assert.equal(r.hostOf(a1), 'host-a');
    const a2 = r.register('host-a');
    assert.equal(r.hostOf(a1), undefined, 'the old token of host-a is refused');
    assert.equal(r.hostOf(a2), 'host-a');
    r.unregister('host-a');
    assert.equal(r.hostOf(a2), undefined);
    assert.equal(r.hostOf(b), 'host-b', 'host-b keeps its token');
    r.unregister('host-a'); // nothing left: no error
  });

  it('a token handed to another host belongs to that host; the first host forgetting it leaves it', () => {
    const r = new AgentRegistry();
    r.register('host-a', 'shared-token');
    r.register('host-b', 'shared-token');
    assert.equal(r.hostOf('shared-token'), 'host-b');
    r.unregister('host-a');
    assert.equal(r.hostOf('shared-token'), 'host-b');
    r.register('host-a');
    assert.equal(r.hostOf('shared-token'), 'host-b');
  });
});
