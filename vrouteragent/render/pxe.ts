// Pure renderers of a PXE server (golden files in test/unit/vrouter/golden/pxe-*): dnsmasq's
// configuration (DHCP range, TFTP for firmware that is not iPXE yet, router advertisements so
// iPXE does not wait ~13 s for IPv6 autoconfiguration) and the iPXE scripts the HTTP endpoint
// answers. Chain: firmware PXE → DHCP → (BIOS: undionly.kpxe, UEFI: ipxe.efi over TFTP, or
// straight on when the NIC ROM is iPXE: option 175) → iPXE → DHCP again → boot.ipxe over HTTP
// → /boot/<mac>.ipxe, the machine's own script.
import { invalid, TStackError } from '../../shared/errors.js';
import { checkPxeRange, type PxeServerSpecT } from '../../shared/protocol/baremetal.js';
import { dnsmasqHead } from './dnsmasq.js';

export interface PxePaths {
  dir: string;
  conf: string;
  tftpRoot: string;
  leases: string;
  pid: string;
  log: string;
}

export const pxePaths = (dir: string): PxePaths => ({ dir, conf: `${dir}/dnsmasq.conf`, tftpRoot: `${dir}/tftp`, leases: `${dir}/leases`, pid: `${dir}/dnsmasq.pid`, log: `${dir}/dnsmasq.log` });

/** The IPv6 prefix of the router advertisements (ULA, per server; nothing routes it). */
export const raPrefix = (pxeServerUuid: string): string => `fd${pxeServerUuid.replace(/-/g, '').slice(0, 2)}:${pxeServerUuid.replace(/-/g, '').slice(2, 6)}::`;

/** Range inside the netmask's subnet with the server, server outside it, machines once each (fields under `server.`). */
export function checkPxeSpec(s: PxeServerSpecT): void {
  checkPxeRange(s, 'server.');
  const macs = new Set<string>();
  for (const [i, m] of s.machines.entries()) {
    const k = m.mac.toLowerCase();
    if (macs.has(k)) throw invalid(`server.machines.${i}.mac`, `${m.mac} appears twice`);
    macs.add(k);
    if (m.boot !== 'local' && !m.token) throw invalid(`server.machines.${i}.token`, `a machine that boots '${m.boot}' needs a token`);
  }
}

/** dnsmasq.conf of a PXE server listening on `iface` in its namespace. */
export function renderPxeDnsmasqConf(s: PxeServerSpecT, iface: string, p: PxePaths): string {
  const base = `http://${s.serverIp}:${s.httpPort}`;
  return [
    ...dnsmasqHead(`PXE server ${s.pxeServerUuid}`, [iface], p),
    'port=0',
    'no-resolv',
    'no-hosts',
    `dhcp-range=set:pxe,${s.dhcpRangeBegin},${s.dhcpRangeEnd},${s.dhcpRangeNetmask},10m`,
    `dhcp-leasefile=${p.leases}`,
    'no-ping',
    'dhcp-authoritative',
    'log-dhcp',
    '# firmware that is not iPXE yet gets iPXE over TFTP; iPXE (option 175) gets the boot script over HTTP',
    'dhcp-match=set:ipxe,175',
    'dhcp-match=set:efi64,option:client-arch,7',
    'dhcp-match=set:efi64,option:client-arch,9',
    'dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe',
    'dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi',
    `dhcp-boot=tag:ipxe,${base}/boot.ipxe`,
    'enable-tftp',
    `tftp-root=${p.tftpRoot}`,
    'tftp-secure',
    '# router advertisements: iPXE stops waiting for IPv6 autoconfiguration (~13 s otherwise)',
    'enable-ra',
    `dhcp-range=::,constructor:${iface},ra-stateless`,
    '',
  ].join('\n');
}

/** The first script every iPXE gets: fetch the machine's own one by its MAC. */
export function renderBootstrapIpxe(s: PxeServerSpecT): string {
  return `#!ipxe\nchain http://${s.serverIp}:${s.httpPort}/boot/\${net0/mac:hexhyp}.ipxe || exit\n`;
}

/** Kernel command line of the ramdisks: where to call back, with which token. */
export function ramdiskCmdline(s: PxeServerSpecT, token: string, mode: 'inspect' | 'deploy'): string {
  return `console=ttyS0,115200 panic=-1 tstack.mode=${mode} tstack.callback=http://${s.serverIp}:${s.httpPort}/callback/${token}`;
}

/** The script of one machine (by MAC): inspect/deploy ramdisk, or exit to the next boot device. */
export function renderMachineIpxe(s: PxeServerSpecT, mac: string): { boot: string; script: string } {
  const known = s.machines.find((x) => x.mac.toLowerCase() === mac.toLowerCase());
  const m = known ?? (s.discoveryToken ? { mac, boot: 'inspect' as const, token: s.discoveryToken } : undefined);
  if (!m || m.boot === 'local' || !m.token) return { boot: 'local', script: '#!ipxe\necho tstack: no PXE boot for this machine; booting the next device\nexit\n' };
  const base = `http://${s.serverIp}:${s.httpPort}/images`;
  const initrd = m.boot === 'inspect' ? 'inspect.img' : 'deploy.img';
  return {
    boot: m.boot,
    script: ['#!ipxe', `kernel ${base}/vmlinuz initrd=${initrd} ${ramdiskCmdline(s, m.token, m.boot)}`, `initrd ${base}/${initrd}`, 'boot', ''].join('\n'),
  };
}

/** What the deploy ramdisk gets from GET /deploy/<token>/instructions (parsed line by line by scripts/baremetal/deploy-rcS, never sourced). */
export interface DeployFilesInfo {
  image?: { sizeBytes: number; sha256: string };
  configDrive?: { sizeBytes: number; sha256: string };
}

/**
 * The instructions of one deploy/wipe as KEY=value lines (every value from the spec's schema
 * or the agent's own files: no shell metacharacters). Throws CONFLICT when a deploy's files
 * were not prepared.
 */
export function renderDeployInstructions(s: PxeServerSpecT, m: PxeServerSpecT['machines'][number], files: DeployFilesInfo): string {
  if (!m.deploy || !m.token) throw invalid('machine.deploy', 'the machine has no deploy instructions');
  const base = `http://${s.serverIp}:${s.httpPort}/deploy/${m.token}`;
  const lines = [`ACTION=${m.deploy.action}`, `INSTANCE=${m.deploy.instanceUuid}`];
  if (m.deploy.rootDevice) lines.push(`ROOT_DEVICE=${m.deploy.rootDevice}`);
  if (m.deploy.action === 'deploy') {
    if (!files.image || !files.configDrive) throw new TStackError('CONFLICT', `instance ${m.deploy.instanceUuid}: its image or config drive was not prepared on this host (baremetal/deploy/prepare)`);
    lines.push(`IMAGE_URL=${base}/image`, `IMAGE_SIZE=${files.image.sizeBytes}`, `IMAGE_SHA256=${files.image.sha256}`);
    lines.push(`CONFIGDRIVE_URL=${base}/configdrive`, `CONFIGDRIVE_SIZE=${files.configDrive.sizeBytes}`, `CONFIGDRIVE_SHA256=${files.configDrive.sha256}`);
  }
  return lines.join('\n') + '\n';
}
