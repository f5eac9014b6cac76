// kvmagent VM lifecycle on real libvirtd + QEMU (TCG), driven through HTTP with AgentClient.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import * as kvm from '../../../shared/protocol/kvm.js';
import { common } from '../../../shared/protocol/index.js';
import { TStackError } from '../../../shared/errors.js';
import { execOk } from '../../../shared/exec.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { ensureLibvirt, domainExists, virsh, LIBVIRT_URI } from '../../harness/libvirt.js';
import { guestImage, makeCidataIso, makeSshKey, waitForSerial } from '../../harness/guest.js';
import { startAgentProcess, type AgentProcess } from '../../harness/agents.js';
import { overlay, tinySpec, eventSink } from './helpers.js';

const client = new AgentClient();

async function until(fn: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<TStackError> {
  try {
    await p;
  } catch (e) {
    const err = e as TStackError;
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (re) assert.match(err.message, re);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

describe('kvmagent: VM lifecycle on libvirt/QEMU', function () {
  this.timeout(360_000);
  const cleanup = useCleanup();
  let dir: string;
  let agent: AgentProcess;
  let ep: { url: string; token: string };
  let base: string;
  let sink: Awaited<ReturnType<typeof eventSink>>;
  const uuids: string[] = [];

  const track = (uuid: string): string => {
    uuids.push(uuid);
    return uuid;
  };

  before(async function () {
    this.timeout(300_000);
    await ensureLibvirt();
    base = (await guestImage()).qcow2;
    dir = await tmpDir('kvm-life', cleanup);
    sink = await eventSink(cleanup);
    agent = await startAgentProcess('kvmagent', { cleanup, controllerUrl: sink.url, logLevel: 'warn', args: ['--watch-interval-ms', '500'] });
    ep = { url: agent.url, token: agent.token };
    // every domain a test here made goes, even when the test failed
    cleanup.add(async () => {
      for (const u of uuids) {
        await execOk('virsh', ['-c', LIBVIRT_URI, 'destroy', `tstack-${u}`], { timeoutMs: 60_000 });
        await execOk('virsh', ['-c', LIBVIRT_URI, 'undefine', `tstack-${u}`], { timeoutMs: 30_000 });
      }
    }, 'kvmagent test domains');
  });

  it('host/facts and host/capacity describe this host', async () => {
    const f = await client.call(kvm.HostFacts, ep, {});
    assert.ok(f.cpu.threads >= 1);
    assert.ok(f.memory.total > 0);
    assert.match(f.hypervisor.libvirtVersion, /^\d+\.\d+/);
    assert.match(f.hypervisor.qemuVersion, /^\d+\.\d+/);
    assert.ok(f.hypervisor.virtTypes.includes('qemu'));
    assert.equal(f.kernelFeatures.vxlan, true);
    assert.ok(f.nics.some((n) => n.name === 'eth0'));
    const c = await client.call(kvm.HostCapacity, ep, {});
    assert.ok(c.cpuNum >= 1 && c.totalMemory > 0 && c.availableMemory > 0);
    assert.ok(c.usedMemory >= 0 && c.vmCount >= 0);
    const p = await client.call(common.Ping, ep, {});
    assert.ok(p.capabilities.includes('vm.hotplug.volume'));
    assert.ok(p.capabilities.includes(`version:libvirt=${f.hypervisor.libvirtVersion}`));
    assert.ok(p.capabilities.includes(`version:qemu=${f.hypervisor.qemuVersion}`));
    assert.deepEqual(p.hypervisor, { libvirt: f.hypervisor.libvirtVersion, qemu: f.hypervisor.qemuVersion });
  });

  describe('a VM from the guest image', () => {
    let uuid: string;
    let serial: string;

    it('vm/start: the guest prints its readiness marker; vm/state, vm/console, idempotent re-start', async () => {
      const key = await makeSshKey(join(dir, 'k1'));
      const cidata = await makeCidataIso(dir, { name: 'c1.iso', metaData: { 'instance-id': 'i-1', 'local-hostname': `${runId()}-vm1` }, userData: `#cloud-config\nssh_authorized_keys:\n  - ${key.pubKey}\n` });
      serial = join(dir, 'vm1.serial.log');
      const spec = tinySpec({ root: await overlay(dir, base, 'vm1.qcow2'), cidata, serialLog: serial, name: `${runId()}-vm1` });
      uuid = track(spec.uuid);
      const t0 = Date.now();
      const r = await client.call(kvm.VmStart, ep, { spec });
      assert.equal(r.state, 'Running');
      assert.equal(r.alreadyRunning, false);
      assert.equal(r.domainName, `tstack-${uuid}`);
      assert.ok(r.vnc && r.vnc.port >= 5900, 'VNC port');
      const line = await waitForSerial(serial, /TINYGUEST-READY/, 180_000);
      assert.match(line, new RegExp(`hostname=${runId()}-vm1`));
      assert.match(line, /datasource=nocloud/);
      process.stderr.write(`      (marker ${Date.now() - t0} ms after vm/start)\n`);

      const st = await client.call(kvm.VmGetState, ep, { uuid });
      assert.equal(st.state, 'Running');
      assert.equal(st.cpuNum, 1);
      assert.equal(st.memorySize, 160 * 1024 * 1024);
      assert.ok(st.devices!.volumes.some((v) => v.uuid === spec.rootVolume.uuid && v.target === 'vda'));
      assert.ok(st.devices!.volumes.some((v) => v.device === 'cdrom' && v.source === cidata));

      const again = await client.call(kvm.VmStart, ep, { spec });
      assert.equal(again.alreadyRunning, true);

      const con = await client.call(kvm.VmConsole, ep, { uuid });
      assert.equal(con.host, '127.0.0.1');
      assert.equal(con.port, r.vnc!.port);

      // the domain is marked as tstack's in its XML
      const xml = await virsh(['dumpxml', `tstack-${uuid}`]);
      assert.match(xml, /<tstack:uuid>/);
      const sync = await client.call(kvm.VmSync, ep, {});
      assert.ok(sync.vms.some((v) => v.uuid === uuid && v.state === 'Running'));
    });

    it('vm/reboot (reset): the guest boots again; no external state event', async () => {
      const before = sink.events.length;
      assert.equal((await client.call(kvm.VmReboot, ep, { uuid, type: 'reset' })).state, 'Running');
      await until(async () => readFileSync(serial, 'utf8').split('TINYGUEST-READY').length - 1 >= 2, 180_000, 'second readiness marker');
      assert.equal(sink.events.slice(before).filter((e) => e.data.vmUuid === uuid).length, 0);
    });

    it('vm/set-console-password changes and removes the VNC password, live and in the config', async () => {
      const pw = async (inactive: boolean): Promise<string | undefined> =>
        /<graphics type='vnc'[^>]*passwd='([^']*)'/.exec(await virsh(['dumpxml', '--security-info', ...(inactive ? ['--inactive'] : []), `tstack-${uuid}`]))?.[1];
      assert.equal(await pw(false), 'pw123456');
      assert.deepEqual(await client.call(kvm.VmSetConsolePassword, ep, { uuid, password: 'n3w-Pass' }), { uuid, hasPassword: true });
      assert.equal(await pw(false), 'n3w-Pass');
      assert.equal(await pw(true), 'n3w-Pass');
      await client.call(kvm.VmSetConsolePassword, ep, { uuid });
      assert.equal(await pw(false), undefined);
      assert.equal(await pw(true), undefined);
      assert.ok((await client.call(kvm.VmConsole, ep, { uuid })).port >= 5900, 'the console still listens');
    });

    it('vm/pause and vm/resume', async () => {
      assert.equal((await client.call(kvm.VmPause, ep, { uuid })).state, 'Paused');
      assert.equal((await client.call(kvm.VmGetState, ep, { uuid })).state, 'Paused');
      assert.equal((await client.call(kvm.VmResume, ep, { uuid })).state, 'Running');
    });

    it('vm/stop (grace) powers the guest off through ACPI, not by force, and removes the domain', async () => {
      const r = await client.call(kvm.VmStop, ep, { uuid, type: 'grace', timeoutMs: 60_000 });
      assert.equal(r.state, 'Stopped');
      assert.equal(r.wasRunning, true);
      assert.equal(r.forced, false, 'the guest should have acted on the ACPI power button');
      await waitForSerial(serial, /TINYGUEST-POWEROFF/, 5_000);
      assert.equal(await domainExists(`tstack-${uuid}`), false);
      assert.equal((await client.call(kvm.VmGetState, ep, { uuid })).state, 'Stopped');
      const again = await client.call(kvm.VmStop, ep, { uuid, type: 'grace' });
      assert.equal(again.wasRunning, false);
    });

    it('vm/destroy twice is fine', async () => {
      const spec = tinySpec({ root: await overlay(dir, base, 'vm2.qcow2'), name: `${runId()}-vm2` });
      const u = track(spec.uuid);
      await client.call(kvm.VmStart, ep, { spec });
      assert.equal(await domainExists(`tstack-${u}`), true);
      assert.deepEqual(await client.call(kvm.VmDestroy, ep, { uuid: u }), { uuid: u, existed: true });
      assert.equal(await domainExists(`tstack-${u}`), false);
      assert.deepEqual(await client.call(kvm.VmDestroy, ep, { uuid: u }), { uuid: u, existed: false });
    });
  });

  describe('bad specs give typed errors and leave no domain', () => {
    let root: string;
    before(async () => {
      root = await overlay(dir, base, 'bad.qcow2');
    });
    const noDomain = async (u: string): Promise<void> => assert.equal(await domainExists(`tstack-${u}`), false, 'no domain may be left');

    it('unknown bridge → NETWORK_ERROR naming the bridge', async () => {
      const spec = tinySpec({ root, nics: [{ uuid: randomUUID(), mac: '52:54:00:aa:00:01', bridge: `${runId()}nobr`, model: 'virtio' }] });
      track(spec.uuid);
      const e = await rejectsWith(client.call(kvm.VmStart, ep, { spec }), 'NETWORK_ERROR', /bridge/);
      assert.equal(e.details?.field, 'spec.nics.0.bridge');
      await noDomain(spec.uuid);
    });

    it('missing volume file → VOLUME_NOT_FOUND', async () => {
      const spec = tinySpec({ root: join(dir, 'does-not-exist.qcow2') });
      track(spec.uuid);
      const e = await rejectsWith(client.call(kvm.VmStart, ep, { spec }), 'VOLUME_NOT_FOUND');
      assert.equal(e.details?.field, 'spec.rootVolume.source.path');
      await noDomain(spec.uuid);
    });

    it('0 vCPUs → INVALID_ARGUMENT on spec.cpuNum (checked by the agent, not only the client)', async () => {
      const spec = tinySpec({ root });
      track(spec.uuid);
      const res = await fetch(`${ep.url}${kvm.VmStart.path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ep.token}` },
        body: JSON.stringify({ spec: { ...spec, cpuNum: 0 } }),
      });
      assert.equal(res.status, 400);
      const body = (await res.json()) as { code: string; details: { field: string } };
      assert.equal(body.code, 'INVALID_ARGUMENT');
      assert.equal(body.details.field, 'spec.cpuNum');
      await noDomain(spec.uuid);
    });

    it('a name with shell characters → INVALID_ARGUMENT on spec.name', async () => {
      const spec = tinySpec({ root });
      track(spec.uuid);
      for (const name of ['vm; rm -rf /', '$(reboot)', "a'b", 'x`id`', '<vm>']) {
        const res = await fetch(`${ep.url}${kvm.VmStart.path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${ep.token}` },
          body: JSON.stringify({ spec: { ...spec, name } }),
        });
        assert.equal(res.status, 400, name);
        const body = (await res.json()) as { code: string; details: { field: string } };
        assert.equal(body.details.field, 'spec.name');
      }
      await noDomain(spec.uuid);
    });

    it('host-passthrough with virtType qemu → INVALID_ARGUMENT', async () => {
      const spec = { ...tinySpec({ root }), cpuMode: 'host-passthrough' as const };
      track(spec.uuid);
      await rejectsWith(client.call(kvm.VmStart, ep, { spec }), 'INVALID_ARGUMENT', /host-passthrough/);
      await noDomain(spec.uuid);
    });
  });

  it('a guest that powers itself off produces a vm.state-changed event within 5 s', async () => {
    const cidata = await makeCidataIso(dir, { name: 'off.iso', metaData: { 'instance-id': 'i-off', 'local-hostname': 'offvm' }, userData: '#!/bin/sh\n(sleep 2; poweroff) &\n' });
    const serial = join(dir, 'off.serial.log');
    const spec = tinySpec({ root: await overlay(dir, base, 'off.qcow2'), cidata, serialLog: serial, name: `${runId()}-off` });
    const uuid = track(spec.uuid);
    await client.call(kvm.VmStart, ep, { spec });
    await waitForSerial(serial, /TINYGUEST-READY/, 180_000);
    // the guest powers off ~2 s after READY; busybox init takes ~2 s more
    const deadline = Date.now() + 30_000;
    while ((await client.call(kvm.VmGetState, ep, { uuid })).state === 'Running' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const offAt = Date.now();
    const ev = await sink.waitFor((e) => e.type === kvm.KvmEvents.vmStateChanged && e.data.vmUuid === uuid && e.data.to === 'Stopped', 5_000);
    process.stderr.write(`      (event at ${ev.receivedAt - offAt} ms relative to vm/state first showing the guest off)\n`);
    // libvirt may show the short 'being shut down' state in between: Running → (Stopping →) Stopped
    const mine = sink.events.filter((e) => e.data.vmUuid === uuid);
    assert.equal(mine[0]!.data.from, 'Running');
    assert.ok(['Running', 'Stopping'].includes(String(ev.data.from)));
    assert.equal(ev.data.cause, 'external');
    assert.equal(ev.data.reason, 'shutdown');
    assert.ok(ev.receivedAt - offAt < 5_000);
    // an operation by the agent itself is not reported as external
    const before = sink.events.length;
    await client.call(kvm.VmDestroy, ep, { uuid });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(sink.events.filter((e, i) => i >= before && e.data.vmUuid === uuid).length, 0);
    assert.equal(existsSync(serial), true);
  });
});
