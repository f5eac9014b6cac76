// Redis CPU of one filtered VM page at 100,000 VMs (issue 19), the store alone: a throwaway
// redis-server, K VM records over H hosts (all Running but every 10th Stopped), then N reads of
// the bench's page (state=Running, hostUuid=<h>, limit 51, createDate order, counted) through
// RedisStore.list. Prints Redis CPU µs per read (INFO used_cpu_*), the client's CPU µs per read
// and the INFO commandstats of the reads.
//   npx tsx scripts/bench/redis-list.ts [--vms 100000] [--hosts 50] [--reads 2000] [--concurrency 16] [--compound 0: without the compound indexes]
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { openStore, type Resource } from '../../controller/store/index.js';
import { storeIndexes } from '../../controller/model/indexes.js';
import { startRedis } from '../../test/harness/redis.js';
import { globalCleanup } from '../../test/harness/cleanup.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const num = (k: string, d: number): number => Number(args.get(k) ?? d);
const VMS = num('vms', 100_000);
const HOSTS = num('hosts', 50);
const READS = num('reads', 2000);
const CONC = num('concurrency', 16);
const COMPOUND = num('compound', 1) !== 0;

async function cpu(raw: Redis): Promise<number> {
  const info = await raw.info('cpu');
  const v = (k: string): number => Number(/* e.g. used_cpu_user:1.23 */ new RegExp(`${k}:([0-9.]+)`).exec(info)![1]);
  return v('used_cpu_user') + v('used_cpu_sys');
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const raw = new Redis(redis.url);
  try {
    const store = await openStore({ backend: 'redis', url: redis.url, ...storeIndexes(), ...(COMPOUND ? {} : { compoundIndexes: [] }) });
    const hosts = Array.from({ length: HOSTS }, () => randomUUID());
    for (let i = 0; i < VMS; i += 1000) {
      const batch: Resource[] = [];
      for (let j = i; j < Math.min(VMS, i + 1000); j++) {
        const h = hosts[j % HOSTS]!;
        batch.push({ uuid: randomUUID(), kind: 'vm-instance', name: `inv${j}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'acc', tags: [], state: j % 10 === 9 ? 'Stopped' : 'Running', hostUuid: h, lastHostUuid: h, zoneUuid: 'z', clusterUuid: 'c', imageUuid: 'img', cpuNum: 1, memorySize: 67108864, type: 'UserVm', hypervisorType: 'KVM', platform: 'Linux' });
      }
      await store.createMany(batch);
    }
    const q = (h: string) => ({ kind: 'vm-instance', filters: [{ field: 'state', op: '=' as const, value: 'Running' }, { field: 'hostUuid', op: '=' as const, value: h }], limit: 51, sort: { field: 'createDate', dir: 'asc' as const } });
    const first = await store.list(q(hosts[0]!));
    await raw.config('RESETSTAT');
    const c0 = await cpu(raw);
    const u0 = process.cpuUsage();
    const t0 = performance.now();
    let n = 0;
    await Promise.all(
      Array.from({ length: CONC }, async () => {
        while (n < READS) {
          const k = n++;
          await store.list(q(hosts[k % HOSTS]!));
        }
      }),
    );
    const wall = performance.now() - t0;
    const u = process.cpuUsage(u0);
    const c1 = await cpu(raw);
    const stats = (await raw.info('commandstats')).split('\n').filter((l) => l.startsWith('cmdstat_') && !l.startsWith('cmdstat_info') && !l.startsWith('cmdstat_config'));
    console.log(JSON.stringify({ compound: COMPOUND, vms: VMS, hosts: HOSTS, reads: READS, total: first.total, items: first.items.length, reads_per_s: Math.round((READS / wall) * 1000), redis_cpu_us_per_read: Math.round(((c1 - c0) * 1e6) / READS), client_cpu_us_per_read: Math.round((u.user + u.system) / READS) }));
    for (const l of stats) console.log(l.trim());
    await store.close();
  } finally {
    raw.disconnect();
    await globalCleanup.run();
  }
}
await main();
