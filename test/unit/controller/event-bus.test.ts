import assert from 'node:assert/strict';
import { EventBus, type ApiEvent } from '../../../controller/events/bus.js';

const ev = (uuid: string): ApiEvent => ({ type: 'resource.created', kind: 'zone', uuid, ownerAccountUuid: 'a', resource: { uuid, kind: 'zone', name: uuid } as never, time: '' });

describe('controller event bus: the recent events kept for SSE resumes', () => {
  it('keeps exactly the last `keep` events; since() answers inside that window, undefined past it', () => {
    const bus = new EventBus(3);
    const seen: number[] = [];
    bus.subscribe((e) => void seen.push(e.id));
    for (let i = 1; i <= 7; i++) bus.publish(ev(`z${i}`));
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7]);
    const at = (n: number): string => `${bus.epoch}.${n}`;
    assert.deepEqual(bus.since(at(4))?.map((e) => e.id), [5, 6, 7], 'the oldest kept is 5');
    assert.deepEqual(bus.since(at(6))?.map((e) => e.id), [7]);
    assert.deepEqual(bus.since(at(7)), []);
    assert.equal(bus.since(at(3)), undefined, 'event 4 is gone: the client must re-read');
    assert.equal(bus.since(at(8)), undefined, 'from the future');
    assert.equal(bus.since('other.1'), undefined, 'another process');
  });
});
