// Benchmark: HTTP requests/s through a tstack load-balancer listener vs the same haproxy
// configuration started by hand, same router namespace, same two backends (busybox httpd in
// namespaces standing in for VMs), same client (a Node load generator run inside an "internet"
// namespace: new connection per request, fixed concurrency, fixed duration). The tstack listener
// is made by the vrouteragent's real apply path (RouterService: validation, render, haproxy -c,
// start); the hand-made one is `haproxy -f` of the rendered file with only the bind port, pid
// file and stats socket changed. Runs alternate (raw, tstack, tstack, raw, …) and medians are compared; the last
// line is `ratio: X` = raw requests/s ÷ tstack requests/s (aim ≤ 1.05).
//   scripts/bench/lb-throughput [rounds=3] [seconds=4] [concurrency=16]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { exec, execOk, startProcess, type RunningProcess } from '../../shared/exec.js';
import { routerListener, startWebBackend } from '../../test/harness/lb.js';
import { logger, setLogLevel } from '../../shared/log.js';
import { RouterService } from '../../vrouteragent/router.js';
import { routerNames } from '../../vrouteragent/names.js';
import { haproxyPaths } from '../../vrouteragent/render/haproxy.js';
import type { RouterSpecT } from '../../shared/protocol/vpc.js';
import { median } from './stats.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const SECONDS = Number(process.argv[3] ?? 4);
const CONC = Number(process.argv[4] ?? 16);
const id = 'b' + randomBytes(3).toString('hex').slice(0, 5);

/** Load generator (runs in the client namespace): prints completed 200s per second. */
const LOAD = `
const http = require('node:http');
const [url, secs, conc] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const agent = new http.Agent({ keepAlive: false, maxSockets: conc });
let ok = 0, bad = 0; const end = Date.now() + secs * 1000;
function one() {
  if (Date.now() >= end) return Promise.resolve();
  return new Promise((res) => {
    const r = http.get(url, { agent }, (s) => { s.resume(); s.on('end', () => { s.statusCode === 200 ? ok++ : bad++; res(); }); });
    r.on('error', () => { bad++; res(); });
  }).then(one);
}
const t0 = Date.now();
Promise.all(Array.from({ length: conc }, one)).then(() => console.log(JSON.stringify({ rps: ok / ((Date.now() - t0) / 1000), ok, bad })));
`;

async function netns(name: string, bridge: string, addr: string, gw?: string): Promise<string> {
  const ns = `${id}${name}`;
  await exec('ip', ['netns', 'add', ns]);
  await exec('ip', ['link', 'add', `${ns}h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await exec('ip', ['link', 'set', `${ns}h`, 'master', bridge, 'up']);
  await exec('ip', ['-n', ns, 'addr', 'add', addr, 'dev', 'eth0']);
  await exec('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  if (gw) await exec('ip', ['-n', ns, 'route', 'add', 'default', 'via', gw]);
  return ns;
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const dataDir = mkdtempSync(join(tmpdir(), `${id}-lb-`));
  const procs: RunningProcess[] = [];
  const brP = `${id}p`;
  const brA = `${id}a`;
  const R = randomUUID();
  const routers = new RouterService({ dataDir, scheme: { nsPrefix: `${id}r`, ifPrefix: `${id}x` }, log: logger('bench') });
  try {
    for (const b of [brP, brA]) {
      await exec('ip', ['link', 'add', b, 'type', 'bridge']);
      await exec('ip', ['link', 'set', b, 'up']);
    }
    const client = await netns('c', brP, '198.51.100.1/24');
    const backends: string[] = [];
    for (const i of [0, 1]) {
      const ns = await netns(`w${i}`, brA, `10.1.0.${5 + i}/24`, '10.1.0.1');
      procs.push(await startWebBackend(ns, join(dataDir, `www${i}`), `web${i}`));
      backends.push(`10.1.0.${5 + i}`);
    }
    const spec: RouterSpecT = {
      routerUuid: R,
      public: { bridge: brP, ip: '198.51.100.10', prefix: 24, gateway: '198.51.100.1' },
      networks: [{ l3NetworkUuid: randomUUID(), bridge: brA, ip: '10.1.0.1', cidr: '10.1.0.0/24' }],
      vips: [],
      eips: [],
      portForwards: [],
      // the manual's default health check (5 s / 2 s)
      loadBalancers: [routerListener({ listenerUuid: randomUUID(), vip: '198.51.100.10', protocol: 'http', healthCheckIntervalSec: 5, healthCheckTimeoutSec: 2, backends: backends.map((ip) => ({ vmNicUuid: randomUUID(), ip })) })],
    };
    await routers.apply(spec);
    const ns = routerNames(R, { nsPrefix: `${id}r`, ifPrefix: `${id}x` }).namespace;
    // the same configuration by hand: another port, its own pid file, no stats socket / state file
    const p = haproxyPaths(join(dataDir, 'vrouter', 'router', R.replace(/-/g, '')));
    const raw = readFileSync(p.cfg, 'utf8')
      .replace(/bind 198\.51\.100\.10:80\b/, 'bind 198.51.100.10:81')
      .replace(/^\s*(pidfile|stats socket|server-state-file|load-server-state-from-file).*$/gm, '');
    const rawCfg = join(dataDir, 'raw.cfg');
    writeFileSync(rawCfg, raw);
    procs.push(await startProcess('haproxy', ['-db', '-f', rawCfg], { netns: ns }));
    await new Promise((r) => setTimeout(r, 1500));
    const run = async (port: number): Promise<number> => {
      const out = await exec('node', ['-e', LOAD, `http://198.51.100.10:${port}/`, String(SECONDS), String(CONC)], { netns: client, timeoutMs: (SECONDS + 30) * 1000 });
      const r = JSON.parse(out.stdout) as { rps: number; ok: number; bad: number };
      if (r.bad > 0) throw new Error(`${r.bad} failed requests on port ${port}`);
      return r.rps;
    };
    await run(80); // warm-up
    const t: number[] = [];
    const h: number[] = [];
    // the order flips every round, so neither side always runs right after the other's load
    for (let i = 0; i < ROUNDS; i++) {
      if (i % 2 === 0) h.push(await run(81));
      t.push(await run(80));
      if (i % 2 === 1) h.push(await run(81));
    }
    const mt = median(t);
    const mh = median(h);
    process.stdout.write(`HTTP GET through an http listener, 2 busybox httpd backends, ${CONC} concurrent, new connection per request, ${ROUNDS} × ${SECONDS} s each\n`);
    process.stdout.write(`tstack listener (vrouteragent apply → haproxy in the router namespace): median ${mt.toFixed(0)} req/s  [${t.map((x) => x.toFixed(0)).join(', ')}]\n`);
    process.stdout.write(`same haproxy config started by hand (same namespace, port 81):       median ${mh.toFixed(0)} req/s  [${h.map((x) => x.toFixed(0)).join(', ')}]\n`);
    process.stdout.write(`ratio: ${(mh / mt).toFixed(2)}\n`);
  } finally {
    for (const x of procs) await x.stop(500).catch(() => undefined);
    await routers.delete(R).catch(() => undefined);
    for (const n of (await exec('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!)) if (n.startsWith(id)) await execOk('ip', ['netns', 'del', n]);
    for (const b of [brP, brA]) await execOk('ip', ['link', 'del', b]);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
