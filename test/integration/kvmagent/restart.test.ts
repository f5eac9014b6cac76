// Restart safety: SIGKILL the kvmagent while two VMs run; they keep running (libvirt owns them,
// not the agent), and the restarted agent reads them back from libvirt without touching them.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import * as kvm from '../../../shared/protocol/kvm.js';
import { execOk, execOut } from '../../../shared/exec.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { ensureLibvirt, LIBVIRT_URI } from '../../harness/libvirt.js';
import { guestImage, makeCidataIso, waitForSerial } from '../../harness/guest.js';
import { startAgentProcess } from '../../harness/agents.js';
import { overlay, tinySpec, eventSink } from './helpers.js';

const client = new AgentClient();
const markers = (log: string): number => readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('TINYGUEST-READY')).length;

describe('kvmagent: restart safety', function () {
  this.timeout(360_000);
  const cleanup = useCleanup();

  it('kvmagent SIGKILLed and restarted while two VMs run: both keep running, vm/sync reports them, nothing is reported or touched', async () => {
    await ensureLibvirt();
    const base = (await guestImage()).qcow2;
    const dir = await tmpDir('kvm-restart', cleanup);
    const sink = await eventSink(cleanup);
    const dataDir = await tmpDir('kvm-restart-data', cleanup);
    let agent = await startAgentProcess('kvmagent', { cleanup, dataDir, controllerUrl: sink.url, logLevel: 'warn', args: ['--watch-interval-ms', '500'] });
    const port = agent.port;
    const specs = await Promise.all(
      [1, 2].map(async (i) => {
        const cidata = await makeCidataIso(dir, { name: `c${i}.iso`, metaData: { 'instance-id': `i-${i}`, 'local-hostname': `${runId()}-r${i}` }, userData: '#!/bin/sh\necho up\n' });
        return tinySpec({ root: await overlay(dir, base, `r${i}.qcow2`), cidata, serialLog: join(dir, `r${i}.log`), name: `${runId()}-r${i}`, memMiB: 128 });
      }),
    );
    cleanup.add(async () => {
      for (const s of specs) {
        await execOk('virsh', ['-c', LIBVIRT_URI, 'destroy', `tstack-${s.uuid}`], { timeoutMs: 60_000 });
        await execOk('virsh', ['-c', LIBVIRT_URI, 'undefine', `tstack-${s.uuid}`], { timeoutMs: 30_000 });
      }
    }, 'restart test domains');
    let ep = { url: agent.url, token: agent.token };
    for (const s of specs) await client.call(kvm.VmStart, ep, { spec: s });
    for (const s of specs) await waitForSerial(s.serialLogPath!, /TINYGUEST-READY/, 120_000);

    await agent.kill9();
    for (const s of specs) {
      assert.equal(await execOut('virsh', ['-c', LIBVIRT_URI, 'domstate', `tstack-${s.uuid}`], { timeoutMs: 30_000 }), 'running', 'the VM survives the agent');
    }
    const eventsBefore = sink.events.length;

    agent = await startAgentProcess('kvmagent', { cleanup, dataDir, port, controllerUrl: sink.url, logLevel: 'warn', args: ['--watch-interval-ms', '500'] });
    ep = { url: agent.url, token: agent.token };
    const sync = await client.call(kvm.VmSync, ep, { includeForeign: true });
    for (const s of specs) {
      const v = sync.vms.find((x) => x.uuid === s.uuid);
      assert.ok(v, `vm/sync reports ${s.uuid}`);
      assert.equal(v.state, 'Running');
      assert.equal(v.domainName, `tstack-${s.uuid}`);
      assert.equal(v.memorySize, 128 * 1024 * 1024);
      const st = await client.call(kvm.VmGetState, ep, { uuid: s.uuid });
      assert.equal(st.state, 'Running');
      assert.ok(st.devices!.volumes.some((d) => d.uuid === s.rootVolume.uuid));
    }
    assert.ok(!sync.foreign.some((f) => f.name.startsWith('tstack-')), 'foreign domains are only the ones tstack did not make');
    // a restart start is a no-op on a running VM
    assert.equal((await client.call(kvm.VmStart, ep, { spec: specs[0]! })).alreadyRunning, true);
    await new Promise((r) => setTimeout(r, 1500));
    for (const s of specs) assert.equal(markers(s.serialLogPath!), 1, 'the guest was not rebooted');
    assert.equal(sink.events.slice(eventsBefore).filter((e) => specs.some((s) => s.uuid === e.data.vmUuid)).length, 0, 'the restarted agent reports no state change for VMs that did not change');

    // and it watches again: a change behind its back is reported
    await execOut('virsh', ['-c', LIBVIRT_URI, 'suspend', `tstack-${specs[1]!.uuid}`], { timeoutMs: 30_000 });
    const ev = await sink.waitFor((e) => e.data.vmUuid === specs[1]!.uuid && e.data.to === 'Paused', 5_000);
    assert.equal(ev.data.from, 'Running');
    for (const s of specs) await client.call(kvm.VmDestroy, ep, { uuid: s.uuid });
  });
});
