// Pure renderers of a VPC router's IPsec configuration (no I/O): strongswan.conf for the router's
// own charon and swanctl.conf with one connection per IPsec connection of the router.
//
// Why these settings:
//   kernel-libipsec        this kernel has no XFRM ESP: ESP is done in userspace over a TUN device
//                          (ipsec0) with routes in table 220; only loaded when the agent's probe
//                          found no kernel ESP
//   vici socket            in the router's state directory (one charon per namespace; the agent,
//                          in the host's mount namespace, reaches it there), named relative to
//                          it: charon and swanctl run there, and a unix socket path is limited
//                          to 107 bytes, which a deep agent data directory would exceed
//   retransmit_*           a peer that is down is retried within seconds, not minutes
//   start_action = start   the tunnel is brought up at load, not on first packet: the far side
//   dpd_action = restart   sees traffic at once, and a restarted router re-establishes by itself
//   keyingtries = 1        charon does not retry by itself: with a wrong key or algorithms it
//                          would renegotiate (a DH exchange each time) in a tight loop; the
//                          agent's watchdog pass initiates a connection that has no SA again,
//                          so a peer that comes up later is still reached, at that pace
//   no close_action        a side that tears a connection down on purpose (changed selectors)
//                          brings it up again itself; the peer re-initiating at the same moment
//                          would race it. A connection left down is revived by the agent's pass.
//   secret = 0x…           the key hex-encoded: no quoting problems whatever it contains
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { RouterIpsecConnectionT } from '../../shared/protocol/ipsec.js';
import { compareIp } from '../ip.js';

/** The vici socket as charon and swanctl name it: relative to their working directory, IpsecPaths.dir. */
export const VICI_URI = 'unix://charon.vici';

export interface IpsecPaths {
  dir: string;
  strongswanConf: string;
  swanctlConf: string;
  vici: string;
  log: string;
  pid: string;
  /** Per connection: the hash of its rendered block (a changed one is re-established). */
  loaded: string;
}

export const ipsecPaths = (routerDir: string): IpsecPaths => {
  const dir = join(routerDir, 'ipsec');
  return { dir, strongswanConf: join(dir, 'strongswan.conf'), swanctlConf: join(dir, 'swanctl.conf'), vici: join(dir, 'charon.vici'), log: join(dir, 'charon.log'), pid: join(dir, 'charon.pid'), loaded: join(dir, 'loaded.json') };
};

const hex = (uuid: string): string => uuid.replace(/-/g, '').toLowerCase();
/** The swanctl name of a connection (and of its one CHILD_SA). */
export const connName = (connectionUuid: string): string => `c-${hex(connectionUuid)}`;

const ENC: Record<RouterIpsecConnectionT['ikeEncryptionAlgorithm'], string> = { '3des': '3des', 'aes-128': 'aes128', 'aes-192': 'aes192', 'aes-256': 'aes256' };
const DH: Record<number, string> = { 2: 'modp1024', 5: 'modp1536', 14: 'modp2048', 15: 'modp3072', 16: 'modp4096', 19: 'ecp256', 20: 'ecp384', 21: 'ecp521' };
const VERSION: Record<RouterIpsecConnectionT['ikeVersion'], number> = { ike: 0, ikev1: 1, ikev2: 2 };

/** strongSwan proposal keywords of a connection's algorithms. */
export function proposals(c: RouterIpsecConnectionT): { ike: string; esp: string } {
  const ike = `${ENC[c.ikeEncryptionAlgorithm]}-${c.ikeAuthAlgorithm}-${DH[c.ikeDhGroup]!}`;
  const pfs = c.pfs === 'none' ? '' : `-${DH[Number(c.pfs.slice('dh-group'.length))]!}`;
  return { ike, esp: `${ENC[c.policyEncryptionAlgorithm]}-${c.policyAuthAlgorithm}${pfs}` };
}

export function renderStrongswanConf(routerUuid: string, p: IpsecPaths, userspaceEsp: boolean): string {
  return [
    `# tstack VPC router ${routerUuid}: IPsec daemon, generated, replaced whole on every apply`,
    'charon {',
    '  load_modular = yes',
    '  install_routes = yes',
    '  retransmit_timeout = 2.0',
    '  retransmit_base = 1.4',
    '  retransmit_tries = 3',
    '  filelog {',
    '    tstack {',
    `      path = ${p.log}`,
    '      time_format = %F %T',
    '      ike_name = yes',
    '      append = no',
    '      default = 1',
    '      flush_line = yes',
    '    }',
    '  }',
    '  plugins {',
    '    include /etc/strongswan.d/charon/*.conf',
    '    vici {',
    `      socket = ${VICI_URI}`,
    '    }',
    '    kernel-libipsec {',
    `      load = ${userspaceEsp ? 'yes' : 'no'}`,
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

function connectionLines(c: RouterIpsecConnectionT): string[] {
  const n = connName(c.connectionUuid);
  const p = proposals(c);
  return [
    `  ${n} {`,
    `    version = ${VERSION[c.ikeVersion]}`,
    `    local_addrs = ${c.vip}`,
    `    remote_addrs = ${c.peerAddress}`,
    `    proposals = ${p.ike}`,
    '    aggressive = no',
    '    keyingtries = 1',
    '    dpd_delay = 10s',
    '    local {',
    '      auth = psk',
    `      id = ${c.vip}`,
    '    }',
    '    remote {',
    '      auth = psk',
    `      id = ${c.peerAddress}`,
    '    }',
    '    children {',
    `      ${n} {`,
    `        local_ts = ${[...c.localCidrs].sort().join(',')}`,
    `        remote_ts = ${[...c.peerCidrs].sort().join(',')}`,
    `        esp_proposals = ${p.esp}`,
    '        mode = tunnel',
    '        start_action = start',
    '        dpd_action = restart',
    '        close_action = start',
    '      }',
    '    }',
    '  }',
  ];
}

/** A digest of one connection's block and key: a loaded connection whose digest changed is re-established. */
export const connectionDigest = (c: RouterIpsecConnectionT): string => createHash('sha256').update(connectionLines(c).join('\n')).update('\0').update(c.psk).digest('hex').slice(0, 16);

/** Connections in a stable order (local address, peer, uuid). */
export function ordered(cs: readonly RouterIpsecConnectionT[]): RouterIpsecConnectionT[] {
  return [...cs].sort((a, b) => compareIp(a.vip, b.vip) || compareIp(a.peerAddress, b.peerAddress) || (a.connectionUuid < b.connectionUuid ? -1 : a.connectionUuid > b.connectionUuid ? 1 : 0));
}

export function renderSwanctlConf(routerUuid: string, cs: readonly RouterIpsecConnectionT[]): string {
  const all = ordered(cs);
  return [
    `# tstack VPC router ${routerUuid}: IPsec connections, generated, replaced whole on every apply`,
    'connections {',
    ...all.flatMap(connectionLines),
    '}',
    'secrets {',
    ...all.flatMap((c) => [`  ike-${hex(c.connectionUuid)} {`, `    id-local = ${c.vip}`, `    id-peer = ${c.peerAddress}`, `    secret = 0x${Buffer.from(c.psk, 'utf8').toString('hex')}`, '  }']),
    '}',
    '',
  ].join('\n');
}
