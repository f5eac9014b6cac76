// Benchmark: tstack `vm/start` (HTTP → kvmagent → pre-checks → define + start through the
// libvirt binding) against a raw `virsh create` of the very same domain XML.
//   npx tsx scripts/bench/vm-start.ts [--runs N]       (default 5 of each, alternating)
// Each sample is the wall time until the domain runs (the call returns); the domain is then
// destroyed (not timed). The guest is the test guest image on a fresh qcow2 overlay, domain
// type 'qemu'. Prints each sample, the medians, and as the last line `ratio: X` (tstack / virsh).
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { exec, execOk } from '../../shared/exec.js';
import { AgentServer } from '../../shared/agent/server.js';
import { AgentClient } from '../../controller/agent-client/client.js';
import * as kvm from '../../shared/protocol/kvm.js';
import { registerKvmAgent } from '../../kvmagent/main.js';
import { LibvirtDriver } from '../../kvmagent/hypervisor/libvirt-driver.js';
import { IpNetwork } from '../../kvmagent/network/bridges.js';
import { buildDomainXml } from '../../kvmagent/domain-xml.js';
import { guestImage } from '../../test/harness/guest.js';
import { median, runsFlag } from './stats.js';

const URI = 'qemu:///system';
const RUNS = runsFlag(5);

async function main(): Promise<void> {
  // a copy libvirt-qemu can read wherever this clone lives (see test/harness/guest.ts)
  const base = (await guestImage()).qcow2;
  const dir = mkdtempSync(join(tmpdir(), 'tstack-bench-'));
  chmodSync(dir, 0o755);
  const token = randomUUID() + randomUUID();
  const server = new AgentServer({ agent: 'tstack-kvmagent', version: 'bench', token });
  const agent = await registerKvmAgent(server, { driver: new LibvirtDriver(URI), network: new IpNetwork() });
  const addr = await server.listen('127.0.0.1', 0);
  const ep = { url: `http://127.0.0.1:${addr.port}`, token };
  const client = new AgentClient();
  const names: string[] = [];
  const t: { tstack: number[]; virsh: number[] } = { tstack: [], virsh: [] };
  try {
    for (let i = 0; i < RUNS * 2; i++) {
      const which = i % 2 === 0 ? 'tstack' : 'virsh';
      const root = join(dir, `root${i}.qcow2`);
      await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, root], { timeoutMs: 30_000 });
      const spec: kvm.VmSpecT = {
        uuid: randomUUID(),
        name: `bench-${i}`,
        cpuNum: 1,
        memorySize: 128 * 1024 * 1024,
        cpuMode: 'default',
        virtType: 'qemu',
        rootVolume: { uuid: randomUUID(), source: { type: 'file', path: root, format: 'qcow2' }, bus: 'virtio', cache: 'none', serial: 'root', deviceIndex: 0 },
        dataVolumes: [],
        cdroms: [],
        nics: [],
        bootOrder: ['hd'],
        serialLogPath: join(dir, `serial${i}.log`),
      };
      const name = `tstack-${spec.uuid}`;
      names.push(name);
      const t0 = performance.now();
      if (which === 'tstack') {
        const r = await client.call(kvm.VmStart, ep, { spec });
        if (r.state !== 'Running') throw new Error(`vm/start returned ${r.state}`);
      } else {
        const f = join(dir, `dom${i}.xml`);
        writeFileSync(f, buildDomainXml(spec));
        await exec('virsh', ['-c', URI, 'create', f], { timeoutMs: 120_000 });
      }
      const ms = performance.now() - t0;
      t[which].push(ms);
      process.stdout.write(`${which.padEnd(6)} run ${Math.floor(i / 2) + 1}: ${ms.toFixed(0)} ms\n`);
      await execOk('virsh', ['-c', URI, 'destroy', name], { timeoutMs: 60_000 });
      await execOk('virsh', ['-c', URI, 'undefine', name], { timeoutMs: 30_000 });
    }
  } finally {
    for (const n of names) {
      await execOk('virsh', ['-c', URI, 'destroy', n], { timeoutMs: 60_000 });
      await execOk('virsh', ['-c', URI, 'undefine', n], { timeoutMs: 30_000 });
    }
    await agent.stop();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const mt = median(t.tstack);
  const mv = median(t.virsh);
  process.stdout.write(`median tstack vm/start: ${mt.toFixed(0)} ms (n=${t.tstack.length})\n`);
  process.stdout.write(`median virsh create:    ${mv.toFixed(0)} ms (n=${t.virsh.length})\n`);
  process.stdout.write(`ratio: ${(mt / mv).toFixed(2)}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`vm-start bench failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
