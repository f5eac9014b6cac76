// Pure renderer of a VPC router's haproxy configuration (no I/O): one frontend + backend pair
// per TCP/HTTP/HTTPS listener, servers named after their VM NIC so haproxy's saved server
// state (health) follows a server across reloads. UDP listeners are not haproxy's (the
// community edition has no UDP proxying): they are left out here.
//
// Why these global settings:
//   stats socket … expose-fd listeners  a reload (-x) takes the listening sockets over from the
//                                       old process, so no connection is refused meanwhile
//   retries 3 + option redispatch 1     a connect that fails (backend just died, not yet marked
//                                       DOWN) is retried on another server: the client sees no error
//   server-state-file                   UP/DOWN is kept across reloads instead of starting UP
//   no global maxconn                   haproxy derives it from the file-descriptor limit; each
//                                       listener's maxConnection caps its frontend
import { basename, join } from 'node:path';
import type { RouterLbListenerT } from '../../shared/protocol/lb.js';
import { compareIp } from '../ip.js';

export interface HaproxyPaths {
  dir: string;
  cfg: string;
  pid: string;
  sock: string;
  state: string;
  certDir: string;
}

/** Unix socket paths are limited to 107 bytes: the stats sockets live under a short directory. */
export const SOCKET_DIR = '/run/tstack-lb';

/** `routerDir` ends in the router's uuid hex (vrouteragent/router.ts), which names its socket. */
export const haproxyPaths = (routerDir: string): HaproxyPaths => {
  const dir = join(routerDir, 'lb');
  return { dir, cfg: join(dir, 'haproxy.cfg'), pid: join(dir, 'haproxy.pid'), sock: join(SOCKET_DIR, `${basename(routerDir)}.sock`), state: join(dir, 'haproxy.state'), certDir: join(dir, 'certs') };
};

const hex = (uuid: string): string => uuid.replace(/-/g, '').toLowerCase();
export const frontendName = (listenerUuid: string): string => `l-${hex(listenerUuid)}`;
export const backendName = (listenerUuid: string): string => `b-${hex(listenerUuid)}`;
export const serverName = (vmNicUuid: string): string => `n-${hex(vmNicUuid)}`;
export const certFile = (p: HaproxyPaths, certificateUuid: string): string => join(p.certDir, `${hex(certificateUuid)}.pem`);

/** The listeners haproxy serves, in a stable order (VIP, then port). */
export function proxied(listeners: readonly RouterLbListenerT[]): RouterLbListenerT[] {
  return listeners.filter((l) => l.protocol !== 'udp').sort((a, b) => compareIp(a.vip, b.vip) || a.port - b.port);
}

function listenerLines(l: RouterLbListenerT, p: HaproxyPaths): string[] {
  const mode = l.protocol === 'tcp' ? 'tcp' : 'http';
  const ssl = l.protocol === 'https' && l.certificate ? ` ssl crt ${certFile(p, l.certificate.certificateUuid)}` : '';
  const front = [
    `frontend ${frontendName(l.listenerUuid)}`,
    `    mode ${mode}`,
    `    bind ${l.vip}:${l.port}${ssl}`,
    `    maxconn ${l.maxConnection}`,
    `    timeout client ${l.idleTimeoutSec}s`,
    ...(mode === 'http' ? ['    option forwardfor'] : []),
    `    default_backend ${backendName(l.listenerUuid)}`,
  ];
  const check = l.healthCheckTarget.startsWith('http:') ? [`    option httpchk GET ${l.healthCheckTarget.slice('http:'.length)}`] : [];
  const servers = [...l.backends].sort((a, b) => compareIp(a.ip, b.ip) || (a.vmNicUuid < b.vmNicUuid ? -1 : 1));
  const back = [
    `backend ${backendName(l.listenerUuid)}`,
    `    mode ${mode}`,
    `    balance ${l.algorithm}`,
    `    timeout server ${l.idleTimeoutSec}s`,
    `    timeout check ${l.healthCheckTimeoutSec}s`,
    ...check,
    `    default-server inter ${l.healthCheckIntervalSec}s fall ${l.unhealthyThreshold} rise ${l.healthyThreshold}`,
    ...servers.map((s) => `    server ${serverName(s.vmNicUuid)} ${s.ip}:${l.instancePort} check`),
  ];
  return [...front, '', ...back, ''];
}

/** The whole configuration, or undefined when the router has nothing for haproxy to serve. */
export function renderHaproxyConfig(routerUuid: string, listeners: readonly RouterLbListenerT[], p: HaproxyPaths): string | undefined {
  const ls = proxied(listeners);
  if (ls.length === 0) return undefined;
  return [
    `# tstack VPC router ${routerUuid}: load balancer, generated, replaced whole on every apply`,
    'global',
    `    pidfile ${p.pid}`,
    `    stats socket ${p.sock} mode 600 level admin expose-fd listeners`,
    `    server-state-file ${p.state}`,
    '',
    'defaults',
    '    timeout connect 5s',
    '    timeout client 60s',
    '    timeout server 60s',
    '    retries 3',
    '    option redispatch 1',
    '    load-server-state-from-file global',
    '',
    ...ls.flatMap((l) => listenerLines(l, p)),
  ].join('\n');
}
