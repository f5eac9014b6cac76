// The CPU cost of metrics collection on a kvmagent with 50 VMs (fake hypervisor: synthetic
// counters, so the figure is tstack's own cost: sampling, rate computation, procfs, prom-client
// and serving /metrics; the real driver adds one `virsh domstats` run per sample).
//   npx tsx scripts/bench/metrics-overhead.ts
// Measures the CPU time of one sample and of one scrape (median of runs), then reports the
// CPU seconds per minute at the defaults (a sample every 10 s, a Prometheus scrape every 15 s).
// Last line `ratio: X` = that cost as a fraction of one core (CPU-s per minute / 60).
import { AgentServer } from '../../shared/agent/server.js';
import { registerKvmAgent } from '../../kvmagent/main.js';
import { FakeDriver } from '../../kvmagent/hypervisor/fake-driver.js';
import { IpNetwork } from '../../kvmagent/network/bridges.js';
import { MetricsCollector } from '../../kvmagent/metrics/collector.js';

const VMS = 50;
const RUNS = 40;
const TOKEN = 'bench-token-0123456789abcdef0123';

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const server = new AgentServer({ agent: 'tstack-kvmagent', version: 'bench', token: TOKEN });
  const driver = new FakeDriver();
  // the collector is driven by hand below (metricsIntervalMs 0: none of its own)
  const agent = await registerKvmAgent(server, { driver, network: new IpNetwork() }, { noWatcher: true, metricsIntervalMs: 0 });
  const collector = new MetricsCollector(driver, server.metrics.registry, { intervalMs: 3_600_000 });
  const addr = await server.listen('127.0.0.1', 0);
  try {
    for (let i = 0; i < VMS; i++) {
      const u = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      await driver.defineAndStart(`<domain type='qemu'><name>tstack-${u}</name><uuid>${u}</uuid><memory unit='KiB'>131072</memory><vcpu>2</vcpu></domain>`, `tstack-${u}`);
    }
    await collector.sample();
    await new Promise((r) => setTimeout(r, 200));
    const sampleCpu: number[] = [];
    const scrapeCpu: number[] = [];
    let bytes = 0;
    for (let i = 0; i < RUNS; i++) {
      let t = cpuMs();
      await collector.sample();
      sampleCpu.push(cpuMs() - t);
      t = cpuMs();
      const r = await fetch(`http://127.0.0.1:${addr.port}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      bytes = (await r.text()).length;
      scrapeCpu.push(cpuMs() - t);
    }
    const s = median(sampleCpu);
    const c = median(scrapeCpu);
    const perMinute = (6 * s + 4 * c) / 1000;
    process.stdout.write(`VMs: ${VMS}; /metrics: ${bytes} bytes\n`);
    process.stdout.write(`median CPU per sample: ${s.toFixed(2)} ms; per scrape: ${c.toFixed(2)} ms (n=${RUNS})\n`);
    process.stdout.write(`CPU seconds per minute (sample/10 s, scrape/15 s): ${perMinute.toFixed(3)}\n`);
    process.stdout.write(`ratio: ${(perMinute / 60).toFixed(5)}\n`);
  } finally {
    collector.stop();
    await agent.stop();
    await server.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`metrics-overhead bench failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
