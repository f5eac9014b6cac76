// libvirtd + virtlogd for tests (started directly where there is no systemd). Never starts
// libvirt's 'default' network: it NATs toward the uplink.
import { existsSync, mkdirSync, writeFileSync, statSync, readFileSync, chownSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { exec, execOk, execOut } from '../../shared/exec.js';
import { globalCleanup, type Cleanup } from './cleanup.js';

export const LIBVIRT_URI = 'qemu:///system';

async function running(name: string): Promise<boolean> {
  return execOk('pgrep', ['-x', name]);
}

/**
 * /dev/kvm root:kvm 0660, as Debian's udev rule sets it. Left root-only (no udev in containers),
 * libvirt re-probes QEMU capabilities on every call (~4 s each) and domain starts pile up.
 */
function fixKvmPermissions(): void {
  try {
    const st = statSync('/dev/kvm');
    const kvmGid = Number(/^kvm:x:(\d+):/m.exec(readFileSync('/etc/group', 'utf8'))?.[1]);
    if (Number.isInteger(kvmGid) && (st.gid !== kvmGid || (st.mode & 0o060) !== 0o060)) {
      chownSync('/dev/kvm', st.uid, kvmGid);
      chmodSync('/dev/kvm', 0o660);
    }
  } catch {
    /* no /dev/kvm: TCG only */
  }
}

/** Make sure virtlogd and libvirtd run and answer on qemu:///system. */
export async function ensureLibvirt(): Promise<void> {
  fixKvmPermissions();
  if (await execOk('virsh', ['-c', LIBVIRT_URI, 'version'], { timeoutMs: 15_000 })) return;
  if (existsSync('/run/systemd/system')) {
    await exec('systemctl', ['start', 'virtlogd', 'libvirtd'], { timeoutMs: 60_000 });
  } else {
    mkdirSync('/run/libvirt', { recursive: true });
    mkdirSync('/var/log/libvirt', { recursive: true });
    if (!(await running('virtlogd'))) await exec('virtlogd', ['-d'], { timeoutMs: 15_000 });
    if (!(await running('libvirtd'))) await exec('libvirtd', ['-d'], { timeoutMs: 30_000 });
  }
  const deadline = Date.now() + 30_000;
  while (!(await execOk('virsh', ['-c', LIBVIRT_URI, 'version'], { timeoutMs: 10_000 }))) {
    if (Date.now() > deadline) throw new Error('libvirtd did not come up (virsh -c qemu:///system version fails)');
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** virsh -c qemu:///system <args>, trimmed stdout. */
export async function virsh(args: string[], timeoutMs = 60_000): Promise<string> {
  return execOut('virsh', ['-c', LIBVIRT_URI, ...args], { timeoutMs, errorCode: 'LIBVIRT_ERROR' });
}

/** Names of all domains (running or defined) that start with prefix. */
export async function domainsWithPrefix(prefix: string): Promise<string[]> {
  const out = await virsh(['list', '--all', '--name']);
  return out
    .split('\n')
    .map((s) => s.trim())
    .filter((n) => n && n.startsWith(prefix));
}

/** Destroy (and undefine, if persistent) every domain whose name starts with prefix. */
export async function destroyDomainsWithPrefix(prefix: string): Promise<void> {
  if (!prefix) throw new Error('destroyDomainsWithPrefix: empty prefix');
  for (const name of await domainsWithPrefix(prefix)) {
    await execOk('virsh', ['-c', LIBVIRT_URI, 'destroy', name], { timeoutMs: 60_000 });
    await execOk('virsh', ['-c', LIBVIRT_URI, 'undefine', name, '--nvram'], { timeoutMs: 30_000 }).then(
      async (ok) => ok || execOk('virsh', ['-c', LIBVIRT_URI, 'undefine', name], { timeoutMs: 30_000 }),
    );
  }
}

/** Start a transient domain from XML (virsh create); cleanup destroys it. Returns its name. */
export async function createTransientDomain(xml: string, dir: string, cleanup: Cleanup = globalCleanup): Promise<string> {
  const name = /<name>([^<]+)<\/name>/.exec(xml)?.[1];
  if (!name) throw new Error('createTransientDomain: the XML has no <name>');
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  cleanup.add(async () => {
    await execOk('virsh', ['-c', LIBVIRT_URI, 'destroy', name], { timeoutMs: 60_000 });
  }, `domain ${name}`);
  await virsh(['create', file], 120_000);
  return name;
}

/** True while libvirt knows the domain. */
export async function domainExists(name: string): Promise<boolean> {
  return execOk('virsh', ['-c', LIBVIRT_URI, 'domstate', name], { timeoutMs: 30_000 });
}

export interface TinyVmSpec {
  name: string;
  /** Boot disk (qcow2 overlay), attached as virtio vda. */
  disk?: string;
  /** Boot from this ISO (IDE CD-ROM hda) instead of the disk. */
  bootIso?: string;
  /** NoCloud cidata ISO (IDE CD-ROM hdc). */
  cidataIso?: string;
  serialLog: string;
  memoryMiB?: number;
  /** NIC on a bridge (virtio), or a restricted-slirp NIC with an SSH port forward. */
  nic?: { bridge: string; mac: string; tap?: string } | { slirpSshPort: number };
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

/** Domain XML for the tiny test guest: type 'qemu' (TCG), 1 vCPU, pc machine, serial to a file. */
export function tinyVmXml(s: TinyVmSpec): string {
  const disks: string[] = [];
  if (s.disk) disks.push(`<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${esc(s.disk)}'/><target dev='vda' bus='virtio'/></disk>`);
  if (s.bootIso) disks.push(`<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='${esc(s.bootIso)}'/><target dev='hda' bus='ide'/><readonly/></disk>`);
  if (s.cidataIso) disks.push(`<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='${esc(s.cidataIso)}'/><target dev='hdc' bus='ide'/><readonly/></disk>`);
  let nic = '';
  let qemuCmd = '';
  if (s.nic && 'bridge' in s.nic) {
    nic = `<interface type='bridge'><source bridge='${esc(s.nic.bridge)}'/><mac address='${s.nic.mac}'/>${s.nic.tap ? `<target dev='${esc(s.nic.tap)}'/>` : ''}<model type='virtio'/></interface>`;
  } else if (s.nic) {
    qemuCmd = `<qemu:commandline><qemu:arg value='-netdev'/><qemu:arg value='user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${s.nic.slirpSshPort}-:22'/><qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=n0,addr=0x9'/></qemu:commandline>`;
  }
  return `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${esc(s.name)}</name>
  <memory unit='MiB'>${s.memoryMiB ?? 192}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='${s.bootIso ? 'cdrom' : 'hd'}'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    ${disks.join('\n    ')}
    ${nic}
    <serial type='file'><source path='${esc(s.serialLog)}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  ${qemuCmd}
</domain>
`;
}
