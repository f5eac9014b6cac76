// What a Redis server did over a window (the scale bench's idle wait): commands per second by
// command from INFO commandstats (Redis counts the commands a script runs too, under their own
// names) and the scripts that held Redis longest, from SLOWLOG (a script blocks every other
// client while it runs).
import { Redis } from 'ioredis';

export interface RedisWindow {
  s: number;
  commands_per_s: number;
  /** calls/s per command, the busiest first (those under 0.05/s left out) */
  by_command: Record<string, number>;
  /** scripts (EVALSHA/EVAL) that ran at least `slowUs`: how many, their median and longest µs */
  slow_scripts: number;
  slow_script_us_p50: number;
  slow_script_us_max: number;
  /** the longest ones, as "µs/keys" (the script's number of keys: its records, docs and claims) */
  slowest: string[];
}

function commandCalls(info: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** Start a window; the returned function ends it. The slow log is reset and set to log from `slowUs`. */
export async function redisWindow(url: string, slowUs = 500): Promise<() => Promise<RedisWindow>> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  await r.connect();
  await r.config('SET', 'slowlog-log-slower-than', String(slowUs));
  await r.config('SET', 'slowlog-max-len', '10000');
  await r.slowlog('RESET');
  const c0 = commandCalls(await r.info('commandstats'));
  const t0 = Date.now();
  return async () => {
    const s = (Date.now() - t0) / 1000;
    const c1 = commandCalls(await r.info('commandstats'));
    const slow = (await r.slowlog('GET', 10000)) as Array<[number, number, number, string[]]>;
    await r.quit();
    // this window's own INFO/SLOWLOG/CONFIG calls are not the server's work
    const own = new Set(['info', 'slowlog', 'config']);
    const rates = [...c1].filter(([k]) => !own.has(k)).map(([k, n]): [string, number] => [k, (n - (c0.get(k) ?? 0)) / s]);
    const scripts = slow.filter((e) => /^eval/i.test(e[3][0] ?? '')).sort((a, b) => a[2] - b[2]);
    return {
      s: Number(s.toFixed(1)),
      commands_per_s: Number(rates.reduce((t, [, v]) => t + v, 0).toFixed(1)),
      by_command: Object.fromEntries(rates.filter(([, v]) => v >= 0.05).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Number(v.toFixed(1))])),
      slow_scripts: scripts.length,
      slow_script_us_p50: scripts[Math.floor(scripts.length / 2)]?.[2] ?? 0,
      slow_script_us_max: scripts.at(-1)?.[2] ?? 0,
      slowest: scripts.slice(-5).reverse().map((e) => `${e[2]}/${e[3][2] ?? '?'}`),
    };
  };
}
