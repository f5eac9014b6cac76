// A VM with a NIC on a test bridge: DHCP from a dnsmasq the test runs in a namespace, SSH into
// the guest, then live changes through the agent: data volume hot-plug/unplug, NIC hot-plug,
// vCPU/memory changes, and a live external disk snapshot — each checked inside the guest.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import * as kvm from '../../../shared/protocol/kvm.js';
import { TStackError } from '../../../shared/errors.js';
import { execOk, execOut, startProcess } from '../../../shared/exec.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { ensureLibvirt, LIBVIRT_URI } from '../../harness/libvirt.js';
import { createBridge, createNetns, createVeth, moveToNetns, addAddress, attachToBridge } from '../../harness/net.js';
import { guestImage, makeCidataIso, makeSshKey, waitForSerial, sshRun } from '../../harness/guest.js';
import { startAgentProcess } from '../../harness/agents.js';
import { overlay, tinySpec, blankQcow2 } from './helpers.js';

const client = new AgentClient();

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('kvmagent: a VM on a bridge (DHCP, SSH) and live changes', function () {
  this.timeout(360_000);
  const cleanup = useCleanup();
  const id = runId();
  const br = `${id}br`;
  const dhNs = `${id}dh`;
  const guestIp = '10.212.0.123';
  const mac = '52:54:00:5e:12:3b';
  let dir: string;
  let ep: { url: string; token: string };
  let key: { priv: string };
  let uuid: string;
  let spec: kvm.VmSpecT;
  const ssh = (cmd: string, timeoutMs = 60_000): Promise<string> => sshRun({ host: guestIp, key: key.priv, cmd, netns: dhNs, timeoutMs });

  before(async function () {
    this.timeout(300_000);
    await ensureLibvirt();
    const base = (await guestImage()).qcow2;
    dir = await tmpDir('kvm-net', cleanup);
    // test bridge (no address, no route/NAT) + a namespace holding dnsmasq and the SSH client
    await createBridge(br, cleanup);
    await createNetns(dhNs, cleanup);
    const [h, n] = await createVeth(`${id}dv`, `${id}dn`, cleanup);
    await attachToBridge(h, br);
    await moveToNetns(n, dhNs);
    await addAddress(n, '10.212.0.1/24', dhNs);
    const dns = await startProcess(
      'dnsmasq',
      [
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        '--port=0',
        '--user=root',
        '--group=root',
        `--interface=${n}`,
        '--bind-interfaces',
        '--except-interface=lo',
        '--no-ping',
        '--dhcp-range=10.212.0.100,10.212.0.150,255.255.255.0,1h',
        `--dhcp-host=${mac},${guestIp}`,
        `--dhcp-leasefile=${join(dir, 'leases')}`,
        `--pid-file=${join(dir, 'dnsmasq.pid')}`,
        '--log-dhcp',
        `--log-facility=${join(dir, 'dnsmasq.log')}`,
      ],
      { netns: dhNs, logFile: join(dir, 'dnsmasq.out') },
    );
    cleanup.add(() => dns.stop(3_000), `dnsmasq pid ${dns.pid}`);

    const agent = await startAgentProcess('kvmagent', { cleanup, logLevel: 'warn' });
    ep = { url: agent.url, token: agent.token };

    key = await makeSshKey(join(dir, 'key'));
    const cidata = await makeCidataIso(dir, {
      metaData: { 'instance-id': 'i-net', 'local-hostname': `${id}-net` },
      userData: `#cloud-config\nssh_authorized_keys:\n  - ${(key as { pubKey: string } & typeof key).pubKey}\n`,
    });
    spec = {
      ...tinySpec({
        root: await overlay(dir, base),
        cidata,
        serialLog: join(dir, 'serial.log'),
        name: `${id}-net`,
        nics: [{ uuid: randomUUID(), mac, bridge: br, model: 'virtio' }],
        memMiB: 160,
      }),
      maxCpuNum: 2,
      maxMemorySize: 224 * 1024 * 1024,
      isoSlots: 1,
    };
    uuid = spec.uuid;
    cleanup.add(async () => {
      await execOk('virsh', ['-c', LIBVIRT_URI, 'destroy', `tstack-${uuid}`], { timeoutMs: 60_000 });
      await execOk('virsh', ['-c', LIBVIRT_URI, 'undefine', `tstack-${uuid}`], { timeoutMs: 30_000 });
    }, 'test domain');
  });

  it('the NIC gets its address from dnsmasq and the test reaches the guest over SSH', async () => {
    const r = await client.call(kvm.VmStart, ep, { spec });
    assert.equal(r.devices.nics[0]!.bridge, br);
    assert.equal(r.devices.nics[0]!.mac, mac);
    const line = await waitForSerial(spec.serialLogPath!, /TINYGUEST-READY/, 180_000);
    assert.match(line, new RegExp(`ip=${guestIp.replace(/\./g, '\\.')}`));
    const out = await ssh('hostname; cat /sys/class/net/eth0/address');
    assert.equal(out.trim(), `${id}-net\n${mac}`);
    // the tap device carries the agent's deterministic name and sits on the test bridge
    const tap = r.devices.nics[0]!.internalName!;
    assert.match(tap, /^vn[0-9a-f]{11}$/);
    const master = JSON.parse(await execOut('ip', ['-j', 'link', 'show', 'dev', tap], { timeoutMs: 10_000 })) as Array<{ master: string }>;
    assert.equal(master[0]!.master, br);
  });

  it('a hot-plugged data volume appears in vm/state and in the guest; detach removes it from both', async () => {
    const volUuid = randomUUID();
    const vol: kvm.VolumeSpecT = { uuid: volUuid, source: { type: 'file', path: await blankQcow2(dir, 'data1.qcow2', '64M'), format: 'qcow2' }, bus: 'virtio', cache: 'none', serial: 'tstackdata1', deviceIndex: 1 };
    const r = await client.call(kvm.VmAttachVolume, ep, { uuid, volume: vol });
    assert.deepEqual(r, { uuid, volumeUuid: volUuid, target: 'vdb', alreadyAttached: false });
    assert.equal((await client.call(kvm.VmAttachVolume, ep, { uuid, volume: vol })).alreadyAttached, true, 'attach is idempotent');
    const st = await client.call(kvm.VmGetState, ep, { uuid });
    assert.ok(st.devices!.volumes.some((v) => v.uuid === volUuid && v.target === 'vdb' && v.serial === 'tstackdata1'));
    const seen = await until('vdb in the guest', async () => {
      const o = await ssh('ls /sys/block; cat /sys/block/vdb/serial 2>/dev/null; echo; cat /sys/block/vdb/size 2>/dev/null');
      return /\bvdb\b/.test(o) && /tstackdata1/.test(o) ? o : undefined;
    }, 60_000);
    assert.match(seen, /\n131072\s*$/, 'a 64 MiB disk is 131072 sectors');
    // a conflicting device index is refused before libvirt sees it
    await assert.rejects(
      client.call(kvm.VmAttachVolume, ep, { uuid, volume: { ...vol, uuid: randomUUID() } }),
      (e: TStackError) => e.code === 'CONFLICT' && /vdb is already used/.test(e.message),
    );

    // grow it live: the guest sees the new size at once; shrinking is refused
    const rs = await client.call(kvm.VmResizeVolume, ep, { uuid, volumeUuid: volUuid, size: 96 * 1024 * 1024 });
    assert.deepEqual(rs, { uuid, volumeUuid: volUuid, size: 96 * 1024 * 1024, changed: true });
    await until('vdb grown in the guest', async () => ((await ssh('cat /sys/block/vdb/size')).trim() === '196608' ? true : undefined), 60_000);
    await assert.rejects(client.call(kvm.VmResizeVolume, ep, { uuid, volumeUuid: volUuid, size: 32 * 1024 * 1024 }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && /shrinking/.test(e.message));

    const d = await client.call(kvm.VmDetachVolume, ep, { uuid, volumeUuid: volUuid, timeoutMs: 90_000 });
    assert.equal(d.wasAttached, true);
    assert.ok(!(await client.call(kvm.VmGetState, ep, { uuid })).devices!.volumes.some((v) => v.uuid === volUuid));
    await until('vdb gone from the guest', async () => (/\bvdb\b/.test(await ssh('ls /sys/block')) ? undefined : true), 60_000);
    assert.equal((await client.call(kvm.VmDetachVolume, ep, { uuid, volumeUuid: volUuid })).wasAttached, false, 'detach is idempotent');
  });

  it('a hot-plugged NIC appears in the guest and on the bridge; detach removes it', async () => {
    const nic: kvm.NicSpecT = { uuid: randomUUID(), mac: '52:54:00:5e:12:3c', bridge: br, model: 'virtio' };
    const r = await client.call(kvm.VmAttachNic, ep, { uuid, nic });
    assert.equal(r.alreadyAttached, false);
    await until('second NIC in the guest', async () => ((await ssh('cat /sys/class/net/*/address')).includes(nic.mac) ? true : undefined), 60_000);
    assert.equal(await execOk('ip', ['link', 'show', 'dev', r.internalName], { timeoutMs: 10_000 }), true);
    await client.call(kvm.VmDetachNic, ep, { uuid, nicUuid: nic.uuid, timeoutMs: 90_000 });
    await until('second NIC gone', async () => ((await ssh('cat /sys/class/net/*/address')).includes(nic.mac) ? undefined : true), 60_000);
    assert.equal(await execOk('ip', ['link', 'show', 'dev', r.internalName], { timeoutMs: 10_000 }), false, 'the tap device is gone');
  });

  it('vm/attach-iso inserts an ISO into the empty CD-ROM slot of the running VM; vm/detach-iso ejects it', async () => {
    const iso = (await guestImage()).iso;
    const r = await client.call(kvm.VmAttachIso, ep, { uuid, isoPath: iso });
    assert.equal(r.slot, 0);
    assert.equal(r.alreadyAttached, false);
    assert.equal((await client.call(kvm.VmAttachIso, ep, { uuid, isoPath: iso })).alreadyAttached, true);
    await assert.rejects(client.call(kvm.VmAttachIso, ep, { uuid, isoPath: join(dir, 'leases') }), (e: TStackError) => e.code === 'CONFLICT' && /in use/.test(e.message));
    // the ISO 9660 volume id of each CD-ROM, read inside the guest (the root disk's FAT label is TINYGUEST too)
    const volIds = 'for d in /dev/sr*; do echo "$d $(dd if=$d bs=2048 skip=16 count=1 2>/dev/null | head -c 72 | tail -c 32)"; done';
    const dev = await until('the ISO readable in the guest', async () => /^(\/dev\/sr\d) TINYGUEST/m.exec(await ssh(volIds))?.[1], 60_000);
    assert.match(dev, /^\/dev\/sr\d$/);
    const st = await client.call(kvm.VmGetState, ep, { uuid });
    assert.ok(st.devices!.volumes.some((v) => v.isoSlot === 0 && v.source === iso));
    assert.deepEqual((await client.call(kvm.VmDetachIso, ep, { uuid })).ejected, [0]);
    assert.ok((await client.call(kvm.VmGetState, ep, { uuid })).devices!.volumes.some((v) => v.isoSlot === 0 && v.source === undefined));
    await until('the ISO gone from the guest', async () => (/TINYGUEST/.test(await ssh(volIds)) ? undefined : true), 60_000);
  });

  it('vm/set-cpu-memory: raises vCPUs within maxCpuNum, sets the balloon, refuses beyond the maximum', async () => {
    const r = await client.call(kvm.VmSetCpuMemory, ep, { uuid, cpuNum: 2, memorySize: 192 * 1024 * 1024 });
    assert.equal(r.cpuNum, 2);
    assert.equal(r.memoryTarget, 192 * 1024 * 1024);
    // the test guest has no virtio_balloon driver: it keeps all its memory, and the agent says so
    if (r.memorySize !== r.memoryTarget) assert.match(r.warnings.join(' '), /balloon/);
    else assert.deepEqual(r.warnings, []);
    await until('2 CPUs present in the guest', async () => ((await ssh('ls -d /sys/devices/system/cpu/cpu[0-9]* | wc -l')).trim() === '2' ? true : undefined), 60_000);
    await assert.rejects(client.call(kvm.VmSetCpuMemory, ep, { uuid, cpuNum: 3 }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && /maximum of 2/.test(e.message));
    await assert.rejects(client.call(kvm.VmSetCpuMemory, ep, { uuid, memorySize: 512 * 1024 * 1024 }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && /maxMemorySize/.test(e.message));
    const st = await client.call(kvm.VmGetState, ep, { uuid });
    assert.equal(st.cpuNum, 2);
    assert.equal(st.memorySize, r.memorySize);
    assert.match(await execOut('virsh', ['-c', LIBVIRT_URI, 'dumpxml', '--inactive', `tstack-${uuid}`], { timeoutMs: 30_000 }), /<currentMemory unit='KiB'>196608</, 'the persistent config has the new target');
  });

  it('vm/snapshot: live external disk-only snapshot switches the root volume to a new top file', async () => {
    const before = (await client.call(kvm.VmGetState, ep, { uuid })).devices!.volumes.find((v) => v.uuid === spec.rootVolume.uuid)!;
    const top = join(dir, 'root-top1.qcow2');
    const r = await client.call(kvm.VmSnapshot, ep, { uuid, volumes: [{ volumeUuid: spec.rootVolume.uuid, newTopPath: top }] });
    assert.equal(r.quiesced, false, 'no guest agent in the test guest: the preferred quiesce falls back');
    assert.deepEqual(r.volumes, [{ volumeUuid: spec.rootVolume.uuid, snapshotPath: before.source, newTopPath: top }]);
    assert.ok(existsSync(top));
    const info = JSON.parse(await execOut('qemu-img', ['info', '-U', '--output=json', top], { timeoutMs: 30_000 })) as { 'backing-filename': string };
    assert.equal(info['backing-filename'], before.source);
    const after = (await client.call(kvm.VmGetState, ep, { uuid })).devices!.volumes.find((v) => v.uuid === spec.rootVolume.uuid)!;
    assert.equal(after.source, top);
    assert.match(await ssh('echo alive'), /alive/, 'the guest keeps running on the new top');
    await assert.rejects(
      client.call(kvm.VmSnapshot, ep, { uuid, volumes: [{ volumeUuid: spec.rootVolume.uuid, newTopPath: join(dir, 'x.qcow2') }], quiesce: 'required' }),
      (e: TStackError) => e.code === 'LIBVIRT_ERROR' && /agent/i.test(e.message),
    );
    await client.call(kvm.VmDestroy, ep, { uuid });
  });
});
