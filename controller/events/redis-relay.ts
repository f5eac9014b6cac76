// Several controllers sharing one Redis inventory must show the same event stream: every
// resource/job event published on this controller's bus is PUBLISHed on a Redis channel, and
// events from the other controllers are republished on this bus (never echoed back).
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { logger } from '../../shared/log.js';
import type { ApiEvent, EventBus } from './bus.js';

const log = logger('event-relay');

export interface EventRelay {
  close(): Promise<void>;
}

export async function startRedisRelay(bus: EventBus, url: string, channel: string): Promise<EventRelay> {
  const me = randomUUID();
  const pub = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3 });
  const sub = new Redis(url, { lazyConnect: true });
  // connection errors are retried by ioredis; log them instead of crashing on 'error'
  pub.on('error', (e: Error) => log.debug({ err: e.message }, 'relay publisher'));
  sub.on('error', (e: Error) => log.debug({ err: e.message }, 'relay subscriber'));
  await pub.connect();
  await sub.connect();
  await sub.subscribe(channel);
  sub.on('message', (_ch: string, msg: string) => {
    try {
      const m = JSON.parse(msg) as { from: string; event: ApiEvent };
      if (m.from !== me) bus.publish(m.event, { remote: true });
    } catch (e) {
      log.warn({ err: e }, 'bad message on the event channel');
    }
  });
  const off = bus.onLocal((e) => {
    const { id: _id, ...event } = e;
    pub.publish(channel, JSON.stringify({ from: me, event })).catch((err: unknown) => log.debug({ err }, 'relay publish failed'));
  });
  return {
    async close() {
      off();
      sub.disconnect();
      pub.disconnect();
    },
  };
}
