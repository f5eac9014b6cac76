// Benchmark: the CPU cost of one agent-protocol round trip. N trivial calls through the
// controller's agent client (as the controller builds it: no request check, a callback URL, so
// async commands are answered inline after 102 Processing) to a real AgentServer, against N raw
// keep-alive `http.request` POSTs of a JSON body to a bare node:http server answering JSON. Both
// sides live in this process, so each figure is client + server CPU (process.cpuUsage) per call.
// Logs go to /dev/null at TSTACK_LOG_LEVEL (default info, as the daemons run).
//   npx tsx scripts/bench/agent-rpc.ts [--runs 7] [--calls 2000] [--concurrency 1]
// Prints per-run µs per call for `echo` (async, answered inline: the VM-create path), `ping`
// (sync) and raw, the medians, and last `ratio: X` = median echo ÷ median raw.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { setRootLogger } from '../../shared/log.js';
import { median, runsFlag } from './stats.js';

const flag = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Math.max(1, Number(process.argv[i + 1])) : def;
};
const RUNS = runsFlag(7);
const CALLS = flag('calls', 2000);
const CONC = flag('concurrency', 1);

const cpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** CPU µs per call of `CALLS` calls, `CONC` at a time. */
async function measure(call: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = cpuUs();
  await Promise.all(
    Array.from({ length: CONC }, async () => {
      for (let i = next++; i < CALLS; i = next++) await call(i);
    }),
  );
  return (cpuUs() - t0) / CALLS;
}

async function main(): Promise<void> {
  // before the modules that make their loggers at import
  setRootLogger(pino({ level: process.env.TSTACK_LOG_LEVEL ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: '/dev/null', sync: true })));
  const { AgentServer } = await import('../../shared/agent/server.js');
  const { AgentClient } = await import('../../controller/agent-client/client.js');
  const { common } = await import('../../shared/protocol/index.js');

  const token = randomBytes(24).toString('hex');
  const server = new AgentServer({ agent: 'bench-agent', version: '0', token });
  const addr = await server.listen('127.0.0.1', 0);
  const ep = { url: `http://127.0.0.1:${addr.port}`, token };
  // as controller/main.ts builds it; the callback is never used (every echo finishes inline)
  const client = new AgentClient({ checkRequests: false, callbackUrl: 'http://127.0.0.1:9/v1/agent-callbacks' });

  // the raw side: a JSON answer of the same size as echo's
  const rawBody = JSON.stringify({ message: 'hello', runs: 1, startedAt: Date.now(), finishedAt: Date.now() });
  const raw = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(rawBody) });
      res.end(rawBody);
    });
  });
  raw.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  const rawPort = (raw.address() as AddressInfo).port;
  const pool = new http.Agent({ keepAlive: true, maxSockets: CONC });
  const rawCall = (): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ message: 'hello' });
      const req = http.request({ host: '127.0.0.1', port: rawPort, path: '/echo', method: 'POST', agent: pool, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });

  const kinds = {
    echo: () => client.call(common.Echo, ep, { message: 'hello' }),
    ping: () => client.call(common.Ping, ep, {}),
    raw: rawCall,
  };
  const t: Record<keyof typeof kinds, number[]> = { echo: [], ping: [], raw: [] };
  try {
    // warm-up: JIT, pools, compiled validators
    for (const k of Object.keys(kinds) as Array<keyof typeof kinds>) for (let i = 0; i < 300; i++) await kinds[k]();
    for (let r = 0; r < RUNS; r++) {
      // alternate the order so drift in machine load hits all sides alike
      const order = (r % 2 === 0 ? ['echo', 'ping', 'raw'] : ['raw', 'ping', 'echo']) as Array<keyof typeof kinds>;
      for (const k of order) t[k].push(await measure(kinds[k]));
      console.log(`run ${r + 1}: echo ${t.echo.at(-1)!.toFixed(0)} µs, ping ${t.ping.at(-1)!.toFixed(0)} µs, raw ${t.raw.at(-1)!.toFixed(0)} µs CPU per call`);
    }
  } finally {
    await server.close();
    pool.destroy();
    raw.closeAllConnections();
    raw.close();
  }
  const m = { echo: median(t.echo), ping: median(t.ping), raw: median(t.raw) };
  console.log(`calls per run ${CALLS}, concurrency ${CONC}, runs ${RUNS}, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`median CPU per call: echo (async, inline) ${m.echo.toFixed(0)} µs, ping (sync) ${m.ping.toFixed(0)} µs, raw http ${m.raw.toFixed(0)} µs`);
  console.log(`ratio: ${(m.echo / m.raw).toFixed(2)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
