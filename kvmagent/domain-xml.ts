// Domain XML: a PURE function from a typed VmSpec to libvirt domain XML (pinned by golden-file
// tests), plus the device snippets used for hot-plug and a parser for the live XML that libvirt
// hands back. Every value that reaches the XML is either schema-validated or escaped here.
import { XMLParser } from 'fast-xml-parser';
import { createHash } from 'node:crypto';
import type { VmSpecT, VolumeSpecT, NicSpecT, VmDevicesT, DiskQosT, NicQosT } from '../shared/protocol/kvm.js';
import { nfsServerPath } from '../shared/protocol/kvm.js';
import type { DiskSnapshotSpec } from './hypervisor/driver.js';
import type { FieldError } from '../shared/protocol/schema.js';

/** XML namespace of tstack's <metadata> element: sync uses it to tell our domains from others. */
export const TSTACK_XMLNS = 'https://tstack.dev/xmlns/libvirt-domain/1';
export const DOMAIN_PREFIX = 'tstack-';

/** Canonical uuid: lower-case, dashed (libvirt's form). */
export function canonicalUuid(u: string): string {
  const h = u.replace(/-/g, '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(h)) throw new Error(`not a uuid: ${u}`);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** libvirt domain name of a VM. */
export function domainName(vmUuid: string): string {
  return DOMAIN_PREFIX + canonicalUuid(vmUuid);
}

/** VM uuid of a tstack domain name, or undefined for anything else. */
export function vmUuidOfDomain(name: string): string | undefined {
  const m = /^tstack-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/.exec(name);
  return m ? m[1] : undefined;
}

/** Host tap device of a NIC: the spec's internalName or "vn" + 11 hex digits of its uuid. */
export function nicInternalName(nic: Pick<NicSpecT, 'uuid' | 'internalName'>): string {
  return nic.internalName ?? 'vn' + canonicalUuid(nic.uuid).replace(/-/g, '').slice(0, 11);
}

export const volumeAlias = (uuid: string): string => `ua-vol-${canonicalUuid(uuid)}`;
export const nicAlias = (uuid: string): string => `ua-nic-${canonicalUuid(uuid)}`;

export function esc(s: string | number): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const BUS_PREFIX: Record<string, string> = { virtio: 'vd', scsi: 'sd', sata: 'sd', ide: 'hd' };

/** Guest device name of a volume: bus prefix + letter of deviceIndex (vda, vdb, sda, hdc…). */
export function targetDev(bus: string, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 25) throw new Error(`device index out of range: ${index}`);
  return BUS_PREFIX[bus]! + String.fromCharCode(97 + index);
}

function cdromBus(spec: Pick<VmSpecT, 'machine'>): 'ide' | 'scsi' {
  // The cloud guest kernel has no AHCI, and q35 has no IDE: q35 CD-ROMs go on virtio-scsi.
  return (spec.machine ?? 'pc') === 'q35' ? 'scsi' : 'ide';
}

interface CdromSlot {
  /** Undefined: an empty drive waiting for vm/attach-iso. */
  path?: string;
  target: string;
  bus: 'ide' | 'scsi';
  alias: string;
  configDrive: boolean;
}

/** Where the CD-ROMs go: the free slots on their bus, ISOs first, then the config drive. */
export function cdromSlots(spec: VmSpecT): CdromSlot[] {
  const bus = cdromBus(spec);
  const used = new Set([spec.rootVolume, ...spec.dataVolumes].filter((v) => BUS_PREFIX[v.bus] === BUS_PREFIX[bus]).map((v) => v.deviceIndex));
  const isos: Array<{ path?: string; configDrive: boolean }> = spec.cdroms.map((p) => ({ path: p, configDrive: false }));
  while (isos.length < (spec.isoSlots ?? 0)) isos.push({ configDrive: false });
  const want = [...isos, ...(spec.configDrive ? [{ path: spec.configDrive, configDrive: true }] : [])];
  const max = bus === 'ide' ? 4 : 26;
  const out: CdromSlot[] = [];
  let idx = 0;
  let n = 0;
  for (const w of want) {
    while (used.has(idx) && idx < max) idx++;
    if (idx >= max) throw new Error('no free CD-ROM slot');
    const slot: CdromSlot = { target: targetDev(bus, idx), bus, alias: w.configDrive ? 'ua-cidata' : `ua-cdrom-${n++}`, configDrive: w.configDrive };
    if (w.path !== undefined) slot.path = w.path;
    out.push(slot);
    idx++;
  }
  return out;
}

/** Semantic checks beyond the schema. Empty when the spec can be rendered and started. */
export function specProblems(spec: VmSpecT): FieldError[] {
  const p: FieldError[] = [];
  if (spec.maxCpuNum !== undefined && spec.maxCpuNum < spec.cpuNum) p.push({ field: 'spec.maxCpuNum', reason: `must be ≥ cpuNum (${spec.cpuNum})` });
  if (spec.maxMemorySize !== undefined && spec.maxMemorySize < spec.memorySize) p.push({ field: 'spec.maxMemorySize', reason: 'must be ≥ memorySize' });
  if (spec.virtType === 'qemu' && spec.cpuMode === 'host-passthrough') {
    p.push({ field: 'spec.cpuMode', reason: "host-passthrough needs virtType 'kvm'; use 'default' or 'custom' with TCG" });
  }
  if (spec.cpuMode === 'custom' && !spec.cpuModel) p.push({ field: 'spec.cpuModel', reason: "required with cpuMode 'custom'" });
  if (spec.cpuMode !== 'custom' && spec.cpuModel) p.push({ field: 'spec.cpuModel', reason: "only allowed with cpuMode 'custom'" });
  const vols = [spec.rootVolume, ...spec.dataVolumes];
  const seenDev = new Map<string, string>();
  const seenUuid = new Set<string>();
  vols.forEach((v, i) => {
    const field = i === 0 ? 'spec.rootVolume' : `spec.dataVolumes.${i - 1}`;
    const dev = targetDev(v.bus, v.deviceIndex);
    if (seenDev.has(dev)) p.push({ field: `${field}.deviceIndex`, reason: `${dev} is already used by ${seenDev.get(dev)}` });
    seenDev.set(dev, field);
    const u = canonicalUuid(v.uuid);
    if (seenUuid.has(u)) p.push({ field: `${field}.uuid`, reason: 'volume listed twice' });
    seenUuid.add(u);
    if (v.bus === 'ide' && v.deviceIndex > 3) p.push({ field: `${field}.deviceIndex`, reason: 'IDE has 4 slots (0-3)' });
    if ((spec.machine ?? 'pc') === 'q35' && v.bus === 'ide') p.push({ field: `${field}.bus`, reason: 'q35 has no IDE bus' });
  });
  try {
    cdromSlots(spec);
  } catch {
    p.push({ field: 'spec.cdroms', reason: 'too many CD-ROMs for the free IDE slots (4 in all, shared with IDE disks)' });
  }
  const macs = new Set<string>();
  const taps = new Set<string>();
  spec.nics.forEach((n, i) => {
    const m = n.mac.toLowerCase();
    if (macs.has(m)) p.push({ field: `spec.nics.${i}.mac`, reason: 'MAC used twice' });
    macs.add(m);
    if (parseInt(m.slice(0, 2), 16) & 1) p.push({ field: `spec.nics.${i}.mac`, reason: 'multicast MAC' });
    const t = nicInternalName(n);
    if (taps.has(t)) p.push({ field: `spec.nics.${i}.internalName`, reason: 'tap name used twice' });
    taps.add(t);
    if (/^(vnet|macvtap|macvlan|vif)/.test(t)) p.push({ field: `spec.nics.${i}.internalName`, reason: 'prefix reserved by libvirt' });
  });
  if (spec.isoSlots !== undefined && spec.isoSlots < spec.cdroms.length) p.push({ field: 'spec.isoSlots', reason: `must be ≥ the number of cdroms (${spec.cdroms.length})` });
  if (new Set(spec.bootOrder).size !== spec.bootOrder.length) p.push({ field: 'spec.bootOrder', reason: 'device listed twice' });
  return p;
}

function diskSourceXml(v: VolumeSpecT, ind: string): { type: string; format: string; lines: string[] } {
  const s = v.source;
  switch (s.type) {
    case 'file':
      return { type: 'file', format: s.format, lines: [`${ind}<source file='${esc(s.path)}'/>`] };
    case 'rbd': {
      const lines: string[] = [];
      if (s.user) {
        lines.push(`${ind}<auth username='${esc(s.user)}'>`);
        if (s.secretUuid) lines.push(`${ind}  <secret type='ceph' uuid='${esc(canonicalUuid(s.secretUuid))}'/>`);
        lines.push(`${ind}</auth>`);
      }
      lines.push(`${ind}<source protocol='rbd' name='${esc(`${s.pool}/${s.image}`)}'>`);
      for (const m of s.monitors) {
        const [host, port] = m.split(':');
        lines.push(`${ind}  <host name='${esc(host!)}' port='${esc(port ?? '6789')}'/>`);
      }
      lines.push(`${ind}</source>`);
      return { type: 'network', format: s.format ?? 'raw', lines };
    }
    case 'nfs':
      return { type: 'network', format: s.format ?? 'qcow2', lines: nfsSourceLines(s, ind) };
  }
}

/**
 * <source> of a disk on NFS opened by QEMU itself (libnfs). libvirt's schema wants <identity>:
 * the uid/gid QEMU's NFS client presents. root, because the storage agent writes the files as
 * root (mode 0600); QEMU runs as libvirt-qemu, so the export needs no_root_squash.
 */
export function nfsSourceLines(s: { server: string; export: string; path: string }, ind: string): string[] {
  const [host, port] = s.server.split(':');
  return [
    `${ind}<source protocol='nfs' name='${esc(nfsServerPath(s))}'>`,
    `${ind}  <host name='${esc(host!)}'${port ? ` port='${esc(port)}'` : ''}/>`,
    `${ind}  <identity user='root' group='root'/>`,
    `${ind}</source>`,
  ];
}

/** libvirt <iotune> element names and values of a disk QoS. */
export function iotuneFields(q: DiskQosT | undefined): Array<[string, number]> {
  if (!q) return [];
  const out: Array<[string, number]> = [];
  if (q.totalBytesSec !== undefined) out.push(['total_bytes_sec', q.totalBytesSec]);
  if (q.readBytesSec !== undefined) out.push(['read_bytes_sec', q.readBytesSec]);
  if (q.writeBytesSec !== undefined) out.push(['write_bytes_sec', q.writeBytesSec]);
  if (q.totalIopsSec !== undefined) out.push(['total_iops_sec', q.totalIopsSec]);
  return out;
}

/** libvirt's <bandwidth> averages are KiB/s (rounded up: a limit never gets looser). */
export function bandwidthKiB(q: NicQosT | undefined): { inbound?: number; outbound?: number } {
  const out: { inbound?: number; outbound?: number } = {};
  if (q?.inboundBytesSec !== undefined) out.inbound = Math.ceil(q.inboundBytesSec / 1024);
  if (q?.outboundBytesSec !== undefined) out.outbound = Math.ceil(q.outboundBytesSec / 1024);
  return out;
}

/** <disk> of a volume (used in the domain and for hot-plug). */
export function diskXml(v: VolumeSpecT, opts: { bootOrder?: number; indent?: string } = {}): string {
  const i = opts.indent ?? '';
  const src = diskSourceXml(v, `${i}  `);
  const out = [
    `${i}<disk type='${src.type}' device='disk'>`,
    `${i}  <driver name='qemu' type='${src.format}' cache='${esc(v.cache)}'/>`,
    ...src.lines,
    `${i}  <target dev='${targetDev(v.bus, v.deviceIndex)}' bus='${v.bus}'/>`,
    `${i}  <serial>${esc(v.serial)}</serial>`,
  ];
  if (v.readonly) out.push(`${i}  <readonly/>`);
  if (v.shareable) out.push(`${i}  <shareable/>`);
  const tune = iotuneFields(v.qos);
  if (tune.length) out.push(`${i}  <iotune>`, ...tune.map(([k, n]) => `${i}    <${k}>${n}</${k}>`), `${i}  </iotune>`);
  if (opts.bootOrder !== undefined) out.push(`${i}  <boot order='${opts.bootOrder}'/>`);
  out.push(`${i}  <alias name='${volumeAlias(v.uuid)}'/>`, `${i}</disk>`);
  return out.join('\n');
}

function cdromXml(c: CdromSlot, bootOrder: number | undefined, i: string): string {
  const out = [
    `${i}<disk type='file' device='cdrom'>`,
    `${i}  <driver name='qemu' type='raw'/>`,
    ...(c.path !== undefined ? [`${i}  <source file='${esc(c.path)}'/>`] : []),
    `${i}  <target dev='${c.target}' bus='${c.bus}'/>`,
    `${i}  <readonly/>`,
  ];
  if (bootOrder !== undefined) out.push(`${i}  <boot order='${bootOrder}'/>`);
  out.push(`${i}  <alias name='${c.alias}'/>`, `${i}</disk>`);
  return out.join('\n');
}

/** <interface> of a NIC on a host bridge (used in the domain and for hot-plug). */
export function nicXml(n: NicSpecT, opts: { bootOrder?: number; indent?: string } = {}): string {
  const i = opts.indent ?? '';
  const out = [
    `${i}<interface type='bridge'>`,
    `${i}  <mac address='${esc(n.mac.toLowerCase())}'/>`,
    `${i}  <source bridge='${esc(n.bridge)}'/>`,
    `${i}  <target dev='${esc(nicInternalName(n))}'/>`,
    `${i}  <model type='${n.model}'/>`,
  ];
  if (n.mtu !== undefined) out.push(`${i}  <mtu size='${n.mtu}'/>`);
  const bw = bandwidthKiB(n.qos);
  if (bw.inbound !== undefined || bw.outbound !== undefined) {
    out.push(`${i}  <bandwidth>`);
    if (bw.inbound !== undefined) out.push(`${i}    <inbound average='${bw.inbound}'/>`);
    if (bw.outbound !== undefined) out.push(`${i}    <outbound average='${bw.outbound}'/>`);
    out.push(`${i}  </bandwidth>`);
  }
  if (opts.bootOrder !== undefined) out.push(`${i}  <boot order='${opts.bootOrder}'/>`);
  out.push(`${i}  <alias name='${nicAlias(n.uuid)}'/>`, `${i}</interface>`);
  return out.join('\n');
}

/** A short hash of the spec, stored in the metadata (tells a restart with a new spec from a retry). */
export function specHash(spec: VmSpecT): string {
  return createHash('sha256').update(stableJson(spec)).digest('hex').slice(0, 16);
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The domain XML of a VM spec. Pure: the same spec always gives the same bytes. */
export function buildDomainXml(spec: VmSpecT): string {
  const uuid = canonicalUuid(spec.uuid);
  const kib = (b: number): number => Math.ceil(b / 1024);
  const maxCpu = spec.maxCpuNum ?? spec.cpuNum;
  const machine = spec.machine ?? 'pc';
  const cdroms = cdromSlots(spec);

  // per-device boot order, in the order of spec.bootOrder
  const boot: { hd?: number; cdrom?: number; network?: number } = {};
  let order = 1;
  for (const d of spec.bootOrder) {
    if (d === 'hd') boot.hd = order++;
    else if (d === 'cdrom' && cdroms.some((c) => !c.configDrive && c.path !== undefined)) boot.cdrom = order++;
    else if (d === 'network' && spec.nics.length > 0) boot.network = order++;
  }

  const x: string[] = [];
  x.push(`<domain type='${spec.virtType}'>`);
  x.push(`  <name>${domainName(uuid)}</name>`);
  x.push(`  <uuid>${uuid}</uuid>`);
  x.push(`  <title>${esc(spec.name)}</title>`);
  x.push(`  <metadata>`);
  x.push(`    <tstack:vm xmlns:tstack='${TSTACK_XMLNS}'>`);
  x.push(`      <tstack:uuid>${uuid}</tstack:uuid>`);
  x.push(`      <tstack:name>${esc(spec.name)}</tstack:name>`);
  x.push(`      <tstack:spec-hash>${specHash(spec)}</tstack:spec-hash>`);
  x.push(`    </tstack:vm>`);
  x.push(`  </metadata>`);
  x.push(`  <memory unit='KiB'>${kib(spec.maxMemorySize ?? spec.memorySize)}</memory>`);
  x.push(`  <currentMemory unit='KiB'>${kib(spec.memorySize)}</currentMemory>`);
  x.push(maxCpu > spec.cpuNum ? `  <vcpu placement='static' current='${spec.cpuNum}'>${maxCpu}</vcpu>` : `  <vcpu placement='static'>${spec.cpuNum}</vcpu>`);
  x.push(`  <os>`);
  x.push(`    <type arch='x86_64' machine='${machine}'>hvm</type>`);
  x.push(`  </os>`);
  x.push(`  <features>`);
  x.push(`    <acpi/>`);
  x.push(`    <apic/>`);
  x.push(`  </features>`);
  if (spec.cpuMode === 'host-model') x.push(`  <cpu mode='host-model'/>`);
  else if (spec.cpuMode === 'host-passthrough') x.push(`  <cpu mode='host-passthrough'/>`);
  else if (spec.cpuMode === 'custom') {
    x.push(`  <cpu mode='custom' match='exact'>`);
    x.push(`    <model fallback='allow'>${esc(spec.cpuModel ?? '')}</model>`);
    x.push(`  </cpu>`);
  }
  x.push(`  <clock offset='utc'/>`);
  x.push(`  <on_poweroff>destroy</on_poweroff>`);
  x.push(`  <on_reboot>restart</on_reboot>`);
  x.push(`  <on_crash>destroy</on_crash>`);
  x.push(`  <pm>`);
  x.push(`    <suspend-to-mem enabled='no'/>`);
  x.push(`    <suspend-to-disk enabled='no'/>`);
  x.push(`  </pm>`);
  x.push(`  <devices>`);
  const vols = [spec.rootVolume, ...spec.dataVolumes];
  const needScsi = vols.some((v) => v.bus === 'scsi') || cdroms.some((c) => c.bus === 'scsi');
  if (needScsi) x.push(`    <controller type='scsi' index='0' model='virtio-scsi'/>`);
  x.push(diskXml(spec.rootVolume, { indent: '    ', ...(boot.hd !== undefined ? { bootOrder: boot.hd } : {}) }));
  for (const v of spec.dataVolumes) x.push(diskXml(v, { indent: '    ' }));
  let firstIso = true;
  for (const c of cdroms) {
    const bo = !c.configDrive && c.path !== undefined && firstIso ? boot.cdrom : undefined;
    if (!c.configDrive && c.path !== undefined) firstIso = false;
    x.push(cdromXml(c, bo, '    '));
  }
  spec.nics.forEach((n, i) => x.push(nicXml(n, { indent: '    ', ...(i === 0 && boot.network !== undefined ? { bootOrder: boot.network } : {}) })));
  if (spec.serialLogPath) {
    x.push(`    <serial type='file'>`);
    x.push(`      <source path='${esc(spec.serialLogPath)}'/>`);
    x.push(`      <target port='0'/>`);
    x.push(`    </serial>`);
  } else {
    x.push(`    <serial type='pty'>`);
    x.push(`      <target port='0'/>`);
    x.push(`    </serial>`);
    x.push(`    <console type='pty'>`);
    x.push(`      <target type='serial' port='0'/>`);
    x.push(`    </console>`);
  }
  x.push(`    <channel type='unix'>`);
  x.push(`      <target type='virtio' name='org.qemu.guest_agent.0'/>`);
  x.push(`    </channel>`);
  if (spec.console) {
    const listen = spec.console.listen ?? '127.0.0.1';
    const pw = spec.console.password !== undefined ? ` passwd='${esc(spec.console.password)}'` : '';
    x.push(`    <graphics type='vnc' autoport='yes' listen='${listen}'${pw}>`);
    x.push(`      <listen type='address' address='${listen}'/>`);
    x.push(`    </graphics>`);
  }
  x.push(`    <memballoon model='virtio'/>`);
  x.push(`  </devices>`);
  x.push(`</domain>`);
  return x.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Reading libvirt's live XML back

export interface ParsedDomain {
  name: string;
  uuid: string;
  /** Set when the domain carries tstack's metadata. */
  tstack?: { uuid: string; name?: string; specHash?: string };
  vcpus?: number;
  memoryKiB?: number;
  devices: VmDevicesT;
  vnc?: { host: string; port: number };
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  removeNSPrefix: true,
  isArray: (name) => ['disk', 'interface', 'graphics', 'host', 'listen'].includes(name),
  parseTagValue: false,
  parseAttributeValue: false,
});

type Node = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as Node)['#text'] === 'string' ? ((v as Node)['#text'] as string) : undefined);
const attr = (n: unknown, a: string): string | undefined => (n && typeof n === 'object' ? str((n as Node)[`@${a}`]) : undefined);

export function parseDomainXml(xml: string): ParsedDomain {
  const doc = parser.parse(xml) as Node;
  const d = (doc.domain ?? {}) as Node;
  const out: ParsedDomain = { name: str(d.name) ?? '', uuid: str(d.uuid) ?? '', devices: { volumes: [], nics: [] } };
  const meta = (d.metadata as Node | undefined)?.vm as Node | undefined;
  if (meta && str(meta.uuid)) {
    out.tstack = { uuid: str(meta.uuid)! };
    if (str(meta.name)) out.tstack.name = str(meta.name)!;
    if (str(meta['spec-hash'])) out.tstack.specHash = str(meta['spec-hash'])!;
  }
  const vcpu = d.vcpu as unknown;
  const cur = attr(vcpu, 'current') ?? str(vcpu);
  if (cur) out.vcpus = Number(cur);
  const mem = str(d.currentMemory) ?? str(d.memory);
  if (mem) out.memoryKiB = Number(mem);
  const dev = (d.devices ?? {}) as Node;
  for (const disk of (dev.disk as Node[] | undefined) ?? []) {
    const alias = attr(disk.alias, 'name');
    const src = disk.source as Node | undefined;
    const v: VmDevicesT['volumes'][number] = {
      device: attr(disk, 'device') ?? 'disk',
      target: attr(disk.target, 'dev') ?? '',
      bus: attr(disk.target, 'bus') ?? '',
    };
    const m = alias ? /^ua-vol-(.+)$/.exec(alias) : null;
    if (m) v.uuid = m[1]!;
    const file = attr(src, 'file') ?? attr(src, 'dev');
    if (file) v.source = file;
    else if (attr(src, 'protocol')) v.source = `${attr(src, 'protocol')}:${attr(src, 'name') ?? ''}`;
    const serial = str(disk.serial);
    if (serial) v.serial = serial;
    const slot = alias ? /^ua-cdrom-(\d+)$/.exec(alias) : null;
    if (slot) v.isoSlot = Number(slot[1]);
    out.devices.volumes.push(v);
  }
  for (const nic of (dev.interface as Node[] | undefined) ?? []) {
    const alias = attr(nic.alias, 'name');
    const n: VmDevicesT['nics'][number] = { mac: attr(nic.mac, 'address') ?? '' };
    const m = alias ? /^ua-nic-(.+)$/.exec(alias) : null;
    if (m) n.uuid = m[1]!;
    const br = attr(nic.source, 'bridge');
    if (br) n.bridge = br;
    const t = attr(nic.target, 'dev');
    if (t) n.internalName = t;
    const model = attr(nic.model, 'type');
    if (model) n.model = model;
    out.devices.nics.push(n);
  }
  for (const g of (dev.graphics as Node[] | undefined) ?? []) {
    if (attr(g, 'type') !== 'vnc') continue;
    const port = Number(attr(g, 'port') ?? '-1');
    if (port > 0) out.vnc = { host: attr(g, 'listen') ?? attr((g.listen as Node[] | undefined)?.[0], 'address') ?? '127.0.0.1', port };
  }
  return out;
}

/**
 * The VNC <graphics> element of a domain XML with its password replaced (or removed). Pure; the
 * rest of the element (port, listen) is kept as libvirt reported it, as update-device requires.
 */
export function withVncPassword(domainXml: string, password: string | undefined): string | undefined {
  const m = /<graphics type='vnc'[^>]*?(\/>|>[\s\S]*?<\/graphics>)/.exec(domainXml);
  if (!m) return undefined;
  let g = m[0].replace(/\s+passwd='[^']*'/, '');
  if (password !== undefined) g = g.replace("<graphics type='vnc'", `<graphics type='vnc' passwd='${esc(password)}'`);
  return g;
}

/**
 * A domain XML with the listen address of its VNC <graphics> replaced (live migration: the
 * source's address does not exist on the destination). Pure; everything else is kept.
 */
export function withVncListen(domainXml: string, address: string): string {
  return domainXml.replace(/<graphics type='vnc'[^>]*?(\/>|>[\s\S]*?<\/graphics>)/, (g) =>
    g.replace(/(<graphics type='vnc'[^>]*?\slisten=')[^']*'/, `$1${esc(address)}'`).replace(/(<listen type='address' address=')[^']*'/g, `$1${esc(address)}'`),
  );
}

/** <domainsnapshot> of an external disk-only snapshot: new tops on files or on NFS (libnfs). */
export function snapshotXml(disks: DiskSnapshotSpec[], name = `tstack-${Date.now()}`): string {
  const x = ['<domainsnapshot>', `  <name>${esc(name)}</name>`, '  <disks>'];
  for (const d of disks) {
    if (d.nfs) {
      x.push(`    <disk name='${esc(d.target)}' snapshot='external' type='network'>`, "      <driver type='qcow2'/>", ...nfsSourceLines(d.nfs, '      '), '    </disk>');
    } else if (d.file) {
      x.push(`    <disk name='${esc(d.target)}' snapshot='external' type='file'>`, "      <driver type='qcow2'/>", `      <source file='${esc(d.file)}'/>`, '    </disk>');
    } else {
      x.push(`    <disk name='${esc(d.target)}' snapshot='no'/>`);
    }
  }
  x.push('  </disks>', '</domainsnapshot>', '');
  return x.join('\n');
}
