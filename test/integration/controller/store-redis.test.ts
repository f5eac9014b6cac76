// The store suite on a real redis-server (throwaway, from the test harness); every open()
// gets its own key prefix, a peer is a second connection with the same prefix.
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { openStore } from '../../../controller/store/index.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { useCleanup } from '../../harness/cleanup.js';
import { storeSuite } from './store.suite.js';

describe('controller store: Redis', () => {
  const cleanup = useCleanup();
  let redis: TestRedis;
  let prefix = '';
  before(async function () {
    this.timeout(30_000);
    redis = await startRedis(cleanup);
  });

  storeSuite({
    open: async () => {
      prefix = `t-${randomUUID().slice(0, 8)}:`;
      return openStore({ backend: 'redis', url: redis.url, prefix });
    },
    openPeer: async () => openStore({ backend: 'redis', url: redis.url, prefix }),
  });

  it('leaves no index keys behind after deletes', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const s = await openStore({ backend: 'redis', url: redis.url, prefix: p });
    const uuid = randomUUID();
    await s.create({ uuid, kind: 'host', name: 'h', parentUuid: 'c1', state: 'Enabled', createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [] });
    await s.transition(uuid, 'Enabled', 'Disabled');
    await s.delete(uuid);
    await s.close();
    const raw = new Redis(redis.url);
    try {
      assert.deepEqual(await raw.keys(`${p}*`), []);
    } finally {
      raw.disconnect();
    }
  });
});
