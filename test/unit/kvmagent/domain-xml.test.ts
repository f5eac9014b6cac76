// Domain XML builder: golden files pin the exact output; semantic spec checks; live-XML parser.
// Regenerate the golden files after an intended change with UPDATE_GOLDEN=1.
import assert from 'node:assert/strict';
import { golden as goldenFile } from '../../harness/assert.js';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { check } from '../../../shared/protocol/schema.js';
import * as kvm from '../../../shared/protocol/kvm.js';
import { minimalSpec, VM_UUID } from './fixtures.js';
import { buildDomainXml, specProblems, parseDomainXml, diskXml, nicXml, domainName, vmUuidOfDomain, nicInternalName, targetDev, cdromSlots, esc, withVncListen, withVncPassword, snapshotXml } from '../../../kvmagent/domain-xml.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), 'golden');

const golden = (name: string, actual: string): void => goldenFile(GOLDEN, name, actual);

const VM = VM_UUID;

function fullSpec(): kvm.VmSpecT {
  return {
    ...minimalSpec(),
    name: 'db_primary.01',
    cpuNum: 2,
    maxCpuNum: 4,
    memorySize: 512 * 1024 * 1024,
    maxMemorySize: 1024 * 1024 * 1024,
    cpuMode: 'custom',
    cpuModel: 'Haswell-noTSX',
    virtType: 'kvm',
    dataVolumes: [
      {
        uuid: 'aaaaaaaa-0000-4000-8000-000000000001',
        source: { type: 'file', path: "/data/it's & <odd>.raw", format: 'raw' },
        bus: 'virtio',
        cache: 'writeback',
        serial: 'data1',
        deviceIndex: 1,
      },
      {
        uuid: 'aaaaaaaa-0000-4000-8000-000000000002',
        source: { type: 'rbd', pool: 'vms', image: 'vol-2', monitors: ['10.0.0.1', '10.0.0.2:3300'], user: 'tstack', secretUuid: 'bbbbbbbb-0000-4000-8000-000000000009' },
        bus: 'scsi',
        cache: 'none',
        serial: 'data2',
        deviceIndex: 0,
      },
      {
        uuid: 'aaaaaaaa-0000-4000-8000-000000000003',
        source: { type: 'nfs', server: 'nfs1.example:2049', export: '/export/ps', path: 'vols/v3.qcow2' },
        bus: 'virtio',
        cache: 'directsync',
        serial: 'data3',
        deviceIndex: 2,
        readonly: true,
        shareable: true,
      },
    ],
    cdroms: ['/isos/install.iso', '/isos/drivers.iso'],
    configDrive: '/var/lib/tstack/cidata/vm.iso',
    nics: [
      { uuid: 'cccccccc-0000-4000-8000-000000000001', mac: '52:54:00:12:34:56', bridge: 'br_eth0', model: 'virtio', mtu: 1450 },
      { uuid: 'cccccccc-0000-4000-8000-000000000002', mac: '52:54:00:AB:CD:EF', bridge: 'br_vx_4242', model: 'e1000', internalName: 'tap-db2' },
    ],
    bootOrder: ['cdrom', 'hd', 'network'],
    console: { type: 'vnc', listen: '0.0.0.0', password: "p<w'&\"d" },
    serialLogPath: '/var/log/tstack/vm.log',
  };
}

describe('kvmagent: domain XML', () => {
  it('the minimal spec is valid and matches its golden file', () => {
    assert.deepEqual(check(kvm.VmSpec, minimalSpec()), []);
    assert.deepEqual(specProblems(minimalSpec()), []);
    golden('minimal.xml', buildDomainXml(minimalSpec()));
  });

  it('a full spec (rbd, nfs, scsi, ISOs, config drive, 2 NICs, VNC password, serial log) matches its golden file', () => {
    assert.deepEqual(check(kvm.VmSpec, fullSpec()), []);
    assert.deepEqual(specProblems(fullSpec()), []);
    golden('full.xml', buildDomainXml(fullSpec()));
  });

  it('q35 puts CD-ROMs on virtio-scsi (no IDE there, no AHCI in the cloud guest kernel)', () => {
    const s = { ...minimalSpec(), machine: 'q35' as const, configDrive: '/c/cidata.iso' };
    golden('q35-cidata.xml', buildDomainXml(s));
    assert.deepEqual(
      cdromSlots(s).map((c) => [c.target, c.bus]),
      [['sda', 'scsi']],
    );
  });

  it('empty ISO slots (for vm/attach-iso) come before the config drive and carry no source', () => {
    const s = { ...minimalSpec(), cdroms: ['/isos/a.iso'], isoSlots: 3, configDrive: '/c/cidata.iso', bootOrder: ['cdrom' as const, 'hd' as const] };
    golden('iso-slots.xml', buildDomainXml(s));
    assert.deepEqual(
      cdromSlots(s).map((c) => [c.alias, c.target, c.path]),
      [
        ['ua-cdrom-0', 'hda', '/isos/a.iso'],
        ['ua-cdrom-1', 'hdb', undefined],
        ['ua-cdrom-2', 'hdc', undefined],
        ['ua-cidata', 'hdd', '/c/cidata.iso'],
      ],
    );
    const p = parseDomainXml(buildDomainXml(s));
    assert.deepEqual(
      p.devices.volumes.filter((v) => v.isoSlot !== undefined).map((v) => [v.isoSlot, v.source]),
      [
        [0, '/isos/a.iso'],
        [1, undefined],
        [2, undefined],
      ],
    );
    assert.deepEqual(specProblems({ ...s, isoSlots: 0 }).map((x) => x.field), ['spec.isoSlots']);
  });

  it('is pure: the same spec gives the same bytes; the spec hash changes with the spec', () => {
    assert.equal(buildDomainXml(fullSpec()), buildDomainXml(fullSpec()));
    const a = buildDomainXml(minimalSpec());
    const b = buildDomainXml({ ...minimalSpec(), cpuNum: 2 });
    const hash = (x: string): string => /<tstack:spec-hash>(\w+)</.exec(x)![1]!;
    assert.notEqual(hash(a), hash(b));
  });

  it('escapes everything that reaches the XML', () => {
    const x = buildDomainXml(fullSpec());
    assert.ok(x.includes("/data/it&apos;s &amp; &lt;odd&gt;.raw"));
    assert.ok(x.includes("passwd='p&lt;w&apos;&amp;&quot;d'"));
    assert.equal(esc(`<'&">`), '&lt;&apos;&amp;&quot;&gt;');
  });

  it('names: domain tstack-<uuid>, round trip, tap names fit IFNAMSIZ', () => {
    assert.equal(domainName(VM.toUpperCase()), `tstack-${VM}`);
    assert.equal(vmUuidOfDomain(`tstack-${VM}`), VM);
    assert.equal(vmUuidOfDomain('tinyguest-probe'), undefined);
    assert.equal(vmUuidOfDomain(`tstack-${VM}x`), undefined);
    const t = nicInternalName({ uuid: 'cccccccc-0000-4000-8000-000000000001' });
    assert.equal(t, 'vncccccccc000');
    assert.ok(t.length <= 15);
    assert.equal(targetDev('virtio', 0), 'vda');
    assert.equal(targetDev('scsi', 2), 'sdc');
    assert.equal(targetDev('ide', 3), 'hdd');
    assert.throws(() => targetDev('virtio', 26));
  });

  it('withVncPassword replaces or removes the password and keeps the rest of <graphics>', () => {
    const live = "<domain><devices><graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1' passwd='old'>\n  <listen type='address' address='127.0.0.1'/>\n</graphics></devices></domain>";
    assert.equal(withVncPassword(live, "n&w'"), "<graphics type='vnc' passwd='n&amp;w&apos;' port='5901' autoport='yes' listen='127.0.0.1'>\n  <listen type='address' address='127.0.0.1'/>\n</graphics>");
    assert.equal(withVncPassword(live, undefined), "<graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'>\n  <listen type='address' address='127.0.0.1'/>\n</graphics>");
    assert.equal(withVncPassword("<graphics type='vnc' port='5900'/>", 'x'), "<graphics type='vnc' passwd='x' port='5900'/>");
    assert.equal(withVncPassword('<domain/>', 'x'), undefined);
  });

  it('withVncListen moves the VNC listen address (live migration) and nothing else', () => {
    const live = "<domain><name>x</name><devices><graphics type='vnc' port='5901' autoport='yes' listen='10.0.0.1' passwd='p'>\n  <listen type='address' address='10.0.0.1'/>\n</graphics><interface type='bridge'><source bridge='br'/></interface></devices></domain>";
    const moved = withVncListen(live, '10.0.0.2');
    assert.equal(moved, live.replace(/10\.0\.0\.1/g, '10.0.0.2'));
    assert.equal(withVncListen('<domain/>', '10.0.0.2'), '<domain/>');
  });

  it('hot-plug snippets carry the user alias used to find them again', () => {
    const d = diskXml(fullSpec().dataVolumes[0]!);
    assert.match(d, /<alias name='ua-vol-aaaaaaaa-0000-4000-8000-000000000001'\/>/);
    assert.match(d, /<target dev='vdb' bus='virtio'\/>/);
    const n = nicXml(fullSpec().nics[1]!);
    assert.match(n, /<mac address='52:54:00:ab:cd:ef'\/>/);
    assert.match(n, /<target dev='tap-db2'\/>/);
    assert.match(n, /<alias name='ua-nic-cccccccc-0000-4000-8000-000000000002'\/>/);
  });

  it('an NFS disk names its file by the path on the server: the export joined with the path inside it, with or without a leading /', () => {
    // the storage agent's libnfs sources say path '/volumes/…': QEMU MOUNTs the file's directory,
    // and '/volumes/<v>' is not exported (MNT3ERR_ACCES); it must be '/export/ps/volumes/<v>'
    for (const path of ['/volumes/v/v.qcow2', 'volumes/v/v.qcow2']) {
      const v = { ...fullSpec().dataVolumes[1]!, source: { type: 'nfs' as const, server: '10.0.0.5', export: '/export/ps/', path } };
      assert.match(diskXml(v), /<source protocol='nfs' name='\/export\/ps\/volumes\/v\/v.qcow2'>\s*<host name='10.0.0.5'\/>\s*<identity user='root' group='root'\/>/);
    }
  });

  it('snapshot XML: file and NFS (network) targets for the snapshotted disks, snapshot=no for the rest', () => {
    const x = snapshotXml([{ target: 'vda' }, { target: 'vdb', file: "/ps/v/next-1.qcow2" }, { target: 'vdc', nfs: { server: '10.0.0.5:2049', export: '/export', path: '/volumes/v/next-2.qcow2' } }], 's1');
    golden('snapshot.xml', x);
    assert.match(x, /<disk name='vda' snapshot='no'\/>/);
    assert.match(x, /<disk name='vdc' snapshot='external' type='network'>\s*<driver type='qcow2'\/>\s*<source protocol='nfs' name='\/export\/volumes\/v\/next-2.qcow2'>\s*<host name='10.0.0.5' port='2049'\/>/);
  });

  it('QoS: a volume gets <iotune> (bytes/s, IOPS), a NIC <bandwidth> in KiB/s rounded up; none without qos', () => {
    const v = { ...fullSpec().dataVolumes[0]!, qos: { totalBytesSec: 2097152, totalIopsSec: 100 } };
    const d = diskXml(v);
    assert.match(d, /<iotune>\s*<total_bytes_sec>2097152<\/total_bytes_sec>\s*<total_iops_sec>100<\/total_iops_sec>\s*<\/iotune>/);
    assert.doesNotMatch(diskXml(fullSpec().dataVolumes[0]!), /iotune/);
    const n = nicXml({ ...fullSpec().nics[1]!, qos: { inboundBytesSec: 1048576, outboundBytesSec: 1500 } });
    assert.match(n, /<bandwidth>\s*<inbound average='1024'\/>\s*<outbound average='2'\/>\s*<\/bandwidth>/);
    assert.doesNotMatch(nicXml(fullSpec().nics[1]!), /bandwidth/);
  });

  describe('schema + semantic validation', () => {
    const bad = (mut: (s: Record<string, unknown>) => void): string[] => {
      const s = JSON.parse(JSON.stringify(minimalSpec())) as Record<string, unknown>;
      mut(s);
      return check(kvm.VmSpec, s).map((e) => e.field);
    };
    it('rejects 0 vCPUs, tiny memory, names with shell characters, relative paths, bad MACs, long tap names', () => {
      assert.deepEqual(bad((s) => (s.cpuNum = 0)), ['cpuNum']);
      assert.deepEqual(bad((s) => (s.memorySize = 1024)), ['memorySize']);
      for (const name of ['a b', 'vm;rm -rf /', '$(id)', '`id`', "it's", 'a|b', '../x', '-rf', '']) {
        assert.deepEqual(bad((s) => (s.name = name)), ['name'], name);
      }
      assert.ok(bad((s) => ((s.rootVolume as { source: { path: string } }).source.path = 'relative.qcow2')).some((f) => f.startsWith('rootVolume')));
      assert.ok(bad((s) => ((s.rootVolume as { source: { path: string } }).source.path = '/a/../etc/shadow')).some((f) => f.startsWith('rootVolume')));
      assert.deepEqual(bad((s) => (s.nics = [{ uuid: VM, mac: '52:54:00:zz:00:01', bridge: 'br0', model: 'virtio' }])), ['nics.0.mac']);
      assert.deepEqual(bad((s) => (s.nics = [{ uuid: VM, mac: '52:54:00:00:00:01', bridge: 'br_a_very_long_name', model: 'virtio' }])), ['nics.0.bridge']);
      assert.deepEqual(bad((s) => (s.nics = [{ uuid: VM, mac: '52:54:00:00:00:01', bridge: 'br0;id', model: 'virtio' }])), ['nics.0.bridge']);
      assert.deepEqual(bad((s) => (s.surprise = 1)), ['surprise']);
      const rbd = (image: string) => (s: Record<string, unknown>) =>
        ((s.rootVolume as { source: unknown }).source = { type: 'rbd', pool: 'p', image, monitors: ['10.0.0.1'] });
      assert.deepEqual(check(kvm.VmSpec, (() => { const s = JSON.parse(JSON.stringify(minimalSpec())) as Record<string, unknown>; rbd('img')(s); return s; })()), []);
      assert.ok(bad(rbd('img:conf=/etc/evil')).length > 0, "':' would be QEMU's rbd option separator");
      assert.ok(bad(rbd('a/b')).length > 0);
      assert.deepEqual(bad((s) => ((s.rootVolume as { serial: string }).serial = 'x'.repeat(21))), ['rootVolume.serial']);
    });

    it('semantic problems: duplicate devices/MACs, host-passthrough under TCG, IDE slots, max < current', () => {
      const s = fullSpec();
      const fields = (x: kvm.VmSpecT): string[] => specProblems(x).map((p) => p.field);
      assert.deepEqual(fields({ ...s, maxCpuNum: 1 }), ['spec.maxCpuNum']);
      assert.deepEqual(fields({ ...minimalSpec(), cpuMode: 'host-passthrough' }), ['spec.cpuMode']);
      assert.deepEqual(fields({ ...minimalSpec(), cpuMode: 'custom' }), ['spec.cpuModel']);
      assert.deepEqual(fields({ ...s, dataVolumes: [{ ...s.dataVolumes[0]!, deviceIndex: 0 }] }), ['spec.dataVolumes.0.deviceIndex']);
      assert.deepEqual(fields({ ...s, nics: [s.nics[0]!, { ...s.nics[1]!, mac: '52:54:00:12:34:56' }] }), ['spec.nics.1.mac']);
      assert.deepEqual(fields({ ...minimalSpec(), cdroms: ['/a', '/b', '/c'], configDrive: '/d', rootVolume: { ...minimalSpec().rootVolume, bus: 'ide' } }), ['spec.cdroms']);
      assert.deepEqual(fields({ ...minimalSpec(), nics: [{ uuid: VM, mac: '53:54:00:00:00:01', bridge: 'br0', model: 'virtio' }] }), ['spec.nics.0.mac']);
      assert.deepEqual(fields({ ...minimalSpec(), nics: [{ uuid: VM, mac: '52:54:00:00:00:01', bridge: 'br0', model: 'virtio', internalName: 'vnet3' }] }), ['spec.nics.0.internalName']);
    });
  });

  it('parses libvirt live XML back: tstack metadata, devices by alias, VNC port', () => {
    const live = buildDomainXml(fullSpec())
      .replace("<graphics type='vnc' autoport='yes' listen='0.0.0.0' passwd='p&lt;w&apos;&amp;&quot;d'>", "<graphics type='vnc' port='5901' autoport='yes' listen='0.0.0.0'>")
      .replace('<tstack:vm', '<tstack:vm');
    const p = parseDomainXml(live);
    assert.equal(p.name, `tstack-${VM}`);
    assert.equal(p.tstack?.uuid, VM);
    assert.equal(p.tstack?.name, 'db_primary.01');
    assert.equal(p.vcpus, 2);
    assert.equal(p.memoryKiB, 512 * 1024);
    assert.deepEqual(p.vnc, { host: '0.0.0.0', port: 5901 });
    const vols = p.devices.volumes;
    assert.equal(vols.length, 7);
    assert.deepEqual(vols[0], { uuid: '11111111-2222-4333-8444-555555555555', device: 'disk', target: 'vda', bus: 'virtio', source: '/var/lib/tstack/ps/root.qcow2', serial: 'root' });
    assert.equal(vols[1]!.source, "/data/it's & <odd>.raw");
    assert.equal(vols[2]!.source, 'rbd:vms/vol-2');
    assert.equal(vols[3]!.source, 'nfs:/export/ps/vols/v3.qcow2');
    assert.deepEqual(
      vols.filter((v) => v.device === 'cdrom').map((v) => [v.target, v.source]),
      [
        ['hda', '/isos/install.iso'],
        ['hdb', '/isos/drivers.iso'],
        ['hdc', '/var/lib/tstack/cidata/vm.iso'],
      ],
    );
    assert.deepEqual(p.devices.nics[0], { uuid: 'cccccccc-0000-4000-8000-000000000001', mac: '52:54:00:12:34:56', bridge: 'br_eth0', internalName: 'vncccccccc000', model: 'virtio' });
  });
});
