#!/usr/bin/env node
// tstack-simulator: N simulated hypervisor hosts in one process (simulator/simulator.ts), for
// scale tests and benchmarks. Each host answers the kvmagent, storageagent and vrouteragent
// protocols on <managementIp>:<port> with its own token; add them to a controller with
//   POST /v1/hosts {"name", "clusterUuid", "managementIp", "agentPort", "ssh": false, "agentToken"}
// (GET <control>/hosts lists what to send). --listen is the control API (simulator/control.ts).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDaemonArgs, runDaemon } from '../shared/daemon.js';
import { logger } from '../shared/log.js';
import { Simulator, validateFaults, type FaultRules } from './simulator.js';
import { startControl } from './control.js';

const log = logger('tstack-simulator');

const num = (v: unknown, name: string, min: number, max: number): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name}: expected a number ${min}..${max}, got ${String(v)}`);
  return n;
};

const cfg = parseDaemonArgs({
  name: 'tstack-simulator',
  port: 7000,
  host: '127.0.0.1',
  description: 'N simulated hypervisor hosts (kvmagent on a fake hypervisor, fake storage and vrouter) in one process',
  options: [
    ['--hosts <n>', 'number of simulated hosts', '10'],
    ['--first-ip <ip>', 'address of host 0; host i listens on first-ip + i', '127.2.0.1'],
    ['--host-port <port>', 'port every simulated host listens on', '7070'],
    ['--latency-ms <ms>', 'added to every command (not ping/connect)', '0'],
    ['--jitter-ms <ms>', 'up to this much more, at random', '0'],
    ['--fail-rate <f>', 'fraction of commands (not ping/connect) that fail', '0'],
    ['--faults-file <file>', 'JSON: {"<command>"|"*": {latencyMs, jitterMs, failRate}} (overrides the three flags above)'],
  ],
});

runDaemon('tstack-simulator', async () => {
  const x = cfg.extra;
  let faults: FaultRules = {};
  const ff = x.faultsFile as string | undefined;
  if (ff) {
    const f = JSON.parse(readFileSync(ff, 'utf8')) as unknown;
    validateFaults(f);
    faults = f;
  } else {
    const rule = { latencyMs: num(x.latencyMs ?? 0, 'latency-ms', 0, 600_000), jitterMs: num(x.jitterMs ?? 0, 'jitter-ms', 0, 600_000), failRate: num(x.failRate ?? 0, 'fail-rate', 0, 1) };
    if (rule.latencyMs || rule.jitterMs || rule.failRate) faults['*'] = rule;
  }
  const sim = new Simulator({ hosts: num(x.hosts ?? 10, 'hosts', 0, 60_000), firstIp: String(x.firstIp ?? '127.2.0.1'), port: num(x.hostPort ?? 7070, 'host-port', 1, 65535), faults });
  const t0 = Date.now();
  await sim.start();
  const control = await startControl(sim, cfg.token, cfg.listenHost, cfg.listenPort);
  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(cfg.dataDir, 'simulator-hosts.json'), JSON.stringify({ control: control.url, hosts: sim.hosts.map((h) => sim.info(h)) }), { mode: 0o600 });
  log.info({ hosts: sim.hosts.length, ms: Date.now() - t0, control: control.url }, 'simulated hosts up');
  return async () => {
    await control.close();
    await sim.stop();
  };
});
