// How long one batch of lease renewals holds Redis (issue 19): the host tracker renews its hosts'
// leases in store batches (Leases.tryAcquireMany, RENEW_CHUNK per batch); on Redis a batch is
// one script and no other client is served while it runs. Renews N leases (opened as the
// controller opens its store: storeIndexes()) in batches of each size, R rounds, and prints
// the scripts' own time from SLOWLOG (Redis's clock around the script: a loaded machine that
// deschedules redis-server adds to it, so the minimum and median are given) and redis-server's
// CPU per batch (INFO cpu; load-insensitive, an upper bound: the batch's reads included).
// Then a tracker round's lease work both ways, R rounds each: every lease by tryAcquire (32 at
// a time, as the tracker did) and all by tryAcquireMany: this process's CPU, redis-server's CPU
// and the commands Redis ran (script-run ones included), per round.
//   npx tsx scripts/bench/lease-renewal.ts [--leases 1000] [--rounds 20] [--sizes 100,500]
import { Redis } from 'ioredis';
import { loadavg } from 'node:os';
import { openStore } from '../../controller/store/index.js';
import { storeIndexes } from '../../controller/model/indexes.js';
import { Leases, leaseUuid } from '../../controller/workflow/lease.js';
import { startRedis } from '../../test/harness/redis.js';
import { Cleanup } from '../../test/harness/cleanup.js';

const arg = (name: string, d: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : d;
};
const N = Number(arg('leases', '1000'));
const ROUNDS = Number(arg('rounds', '20'));
const SIZES = arg('sizes', '100,500').split(',').map(Number);

async function main(): Promise<void> {
  const cleanup = new Cleanup();
  try {
    const redis = await startRedis(cleanup);
    const store = await openStore({ backend: 'redis', url: redis.url, ...storeIndexes() });
    const r = new Redis(redis.url);
    try {
      const keys = Array.from({ length: N }, (_, i) => `host-tracker:bench-${i}`);
      const holder = 'bench';
      if ((await new Leases(store).tryAcquireMany(keys, holder, 30_000)).size !== N) throw new Error('leases not all taken');
      await r.config('SET', 'slowlog-log-slower-than', '0');
      await r.config('SET', 'slowlog-max-len', '100000');
      const out: Record<string, unknown> = { leases: N, rounds: ROUNDS, load1_start: Number(loadavg()[0]!.toFixed(2)) };
      const cpu = async (): Promise<number> => {
        const info = await r.info('cpu');
        const v = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
        return v('used_cpu_user') + v('used_cpu_sys');
      };
      const renewAll = async (size: number): Promise<void> => {
        for (let i = 0; i < N; i += size) {
          const chunk = keys.slice(i, i + size).map(leaseUuid);
          const cur = await store.list({ kind: 'lease', filters: [{ field: 'uuid', op: '?=', value: chunk }] });
          const epoch = (s: string): number => Number(s.slice(s.lastIndexOf('#') + 1));
          await store.batch(cur.items.map((l) => ({ op: 'transition' as const, uuid: l.uuid, from: l.state!, to: `${holder}#${epoch(l.state!) + 1}`, patch: { expiresAt: Date.now() + 30_000 } })));
        }
      };
      await renewAll(N); // the script loaded (its first EVALSHA is a NOSCRIPT)
      for (const size of SIZES) {
        await r.slowlog('RESET');
        const cpu0 = await cpu();
        for (let round = 0; round < ROUNDS; round++) await renewAll(size);
        const cpuUs = ((await cpu()) - cpu0) * 1e6;
        const log = (await r.slowlog('GET', 100000)) as Array<[number, number, number, string[]]>;
        const us = log.filter((e) => /^evalsha$/i.test(e[3][0] ?? '') && Number(e[3][2]) === size).map((e) => e[2]).sort((a, b) => a - b);
        out[`batch_${size}`] = { scripts: us.length, us_min: us[0], us_p50: us[Math.floor(us.length / 2)], us_p90: us[Math.floor(us.length * 0.9)], us_max: us.at(-1), redis_cpu_us_per_batch: Math.round(cpuUs / (ROUNDS * Math.ceil(N / size))) };
      }
      const calls = async (): Promise<number> => [...(await r.info('commandstats')).matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].filter((m) => !['info', 'slowlog', 'config'].includes(m[1]!)).reduce((t, m) => t + Number(m[2]), 0);
      const leases = new Leases(store);
      const ways: Record<string, () => Promise<unknown>> = {
        one_by_one: async () => {
          const queue = [...keys];
          await Promise.all(Array.from({ length: 32 }, async () => {
            for (let k = queue.shift(); k !== undefined; k = queue.shift()) if (!(await leases.tryAcquire(k, holder, 30_000))) throw new Error(`${k} lost`);
          }));
        },
        many: async () => {
          if ((await leases.tryAcquireMany(keys, holder, 30_000, 32)).size !== N) throw new Error('leases lost');
        },
      };
      for (const [name, round] of Object.entries(ways)) {
        await round();
        const [c0, r0, n0, t0] = [process.cpuUsage(), await cpu(), await calls(), performance.now()];
        for (let i = 0; i < ROUNDS; i++) await round();
        const wall = (performance.now() - t0) / ROUNDS;
        const c = process.cpuUsage(c0);
        out[`round_${name}`] = {
          client_cpu_ms: Number(((c.user + c.system) / 1000 / ROUNDS).toFixed(1)),
          redis_cpu_ms: Number(((((await cpu()) - r0) * 1000) / ROUNDS).toFixed(1)),
          redis_commands: Math.round(((await calls()) - n0) / ROUNDS),
          wall_ms: Number(wall.toFixed(1)),
        };
      }
      out.load1_end = Number(loadavg()[0]!.toFixed(2));
      process.stdout.write(JSON.stringify(out) + '\n');
    } finally {
      r.disconnect();
      await store.close();
    }
  } finally {
    await cleanup.run();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
