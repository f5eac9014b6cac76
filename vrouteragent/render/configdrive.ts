// Pure renderers of a NoCloud "cidata" config drive: meta-data, user-data, network-config (v2).
import type { Static } from '../../shared/protocol/schema.js';
import type { ConfigDriveNetwork } from '../../shared/protocol/vrouter.js';
import { netmaskToPrefix } from '../ip.js';

export type ConfigDriveNetworkSpec = Static<typeof ConfigDriveNetwork>;

export interface ConfigDriveSpec {
  instanceId: string;
  hostname: string;
  userData?: string;
  sshKeys?: string[];
  networks?: ConfigDriveNetworkSpec[];
  /** vendor-data (cloud-init merges it under user-data): bare metal puts the root password hash here. */
  vendorData?: string;
}

/** A YAML scalar: plain when safe, else a JSON (= YAML double-quoted) string. */
export function yamlScalar(s: string): string {
  return /^[A-Za-z0-9_./@+=-][A-Za-z0-9 _./@+=:-]*$/.test(s) && !/: |:$| $/.test(s) && !/^(true|false|yes|no|null|on|off|~)$/i.test(s) && !/^[0-9.+-]+$/.test(s)
    ? s
    : JSON.stringify(s);
}

export function renderMetaData(c: ConfigDriveSpec): string {
  const lines = [`instance-id: ${yamlScalar(c.instanceId)}`, `local-hostname: ${yamlScalar(c.hostname)}`];
  const keys = c.sshKeys ?? [];
  if (keys.length) {
    lines.push('public-keys:');
    for (const k of keys) lines.push(`  - ${yamlScalar(k)}`);
  }
  return lines.join('\n') + '\n';
}

export function renderUserData(c: ConfigDriveSpec): string {
  return c.userData ?? '';
}

export function renderNetworkConfig(c: ConfigDriveSpec): string {
  const nets = c.networks ?? [];
  if (nets.length === 0) {
    return ['version: 2', 'ethernets:', '  nic0:', '    match:', '      name: "e*"', '    dhcp4: true', ''].join('\n');
  }
  const out = ['version: 2', 'ethernets:'];
  nets.forEach((n, i) => {
    out.push(`  nic${i}:`, '    match:', `      macaddress: "${n.mac.toLowerCase()}"`, `    set-name: eth${i}`);
    out.push('    addresses:', `      - ${n.ip}/${netmaskToPrefix(n.netmask)}`);
    if (n.mtu) out.push(`    mtu: ${n.mtu}`);
    if (n.gateway) out.push('    routes:', '      - to: 0.0.0.0/0', `        via: ${n.gateway}`);
    if ((n.dnsServers && n.dnsServers.length) || n.dnsDomain) {
      out.push('    nameservers:');
      if (n.dnsServers && n.dnsServers.length) out.push(`      addresses: [${n.dnsServers.join(', ')}]`);
      if (n.dnsDomain) out.push(`      search: [${n.dnsDomain}]`);
    }
  });
  return out.join('\n') + '\n';
}
