// The load balancer of a VPC router: one haproxy per router namespace, configured by
// render/haproxy.ts from the router's desired state. A new configuration is written next to the
// live one, checked with `haproxy -c`, and only then swapped in and loaded by a seamless reload
// (`-x <stats socket>` hands the listening sockets over, `-sf` lets the old process finish its
// connections). The servers' health (UP/DOWN) is saved from the stats socket before a reload and
// read back by the new process. haproxy daemonizes, so it keeps serving while the agent is down;
// the agent finds it again by its pid file, checked against /proc.
import { createConnection } from 'node:net';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { TStackError, invalid } from '../shared/errors.js';
import { exec } from '../shared/exec.js';
import type { RouterLbListenerT } from '../shared/protocol/lb.js';
import type { RouterSpecT } from '../shared/protocol/vpc.js';
import { backendName, certFile, haproxyPaths, proxied, renderHaproxyConfig, serverName, SOCKET_DIR, type HaproxyPaths } from './render/haproxy.js';
import { inSubnet, parseCidr } from './ip.js';
import { uuidHex } from './names.js';
import { cmdlineOf, inNamespace, sleep, stopPid } from './proc.js';
import { ensureDir, writeIfChanged } from './state.js';


/** Semantic checks of the listeners against the rest of the router (the schema checked shapes). */
export function validateLoadBalancers(r: RouterSpecT, field = 'router.loadBalancers'): void {
  const ls = r.loadBalancers ?? [];
  const mine = new Set([r.public.ip, ...r.vips]);
  const nets = r.networks.map((n) => parseCidr(n.cidr));
  const used = new Map<string, number>();
  const ids = new Set<string>();
  ls.forEach((l, i) => {
    const f = `${field}.${i}`;
    const id = uuidHex(l.listenerUuid);
    if (ids.has(id)) throw invalid(`${f}.listenerUuid`, `listener ${l.listenerUuid} is given twice`);
    ids.add(id);
    if (!mine.has(l.vip)) throw invalid(`${f}.vip`, `${l.vip} is neither the router's public IP nor one of its VIPs`);
    const k = `${l.vip}/${l.protocol === 'udp' ? 'udp' : 'tcp'}/${l.port}`;
    if (used.has(k)) throw invalid(`${f}.port`, `${k} is also used by loadBalancers.${used.get(k)!}`);
    used.set(k, i);
    if (l.protocol === 'https' && !l.certificate) throw invalid(`${f}.certificate`, 'an https listener needs a certificate');
    if (l.certificate && !/-----BEGIN CERTIFICATE-----/.test(l.certificate.pem)) throw invalid(`${f}.certificate.pem`, 'no PEM certificate');
    if (l.certificate && !/-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/.test(l.certificate.pem)) throw invalid(`${f}.certificate.pem`, 'no PEM private key');
    if (l.healthCheckTimeoutSec > l.healthCheckIntervalSec) throw invalid(`${f}.healthCheckTimeoutSec`, `${l.healthCheckTimeoutSec} s is longer than the interval ${l.healthCheckIntervalSec} s`);
    l.backends.forEach((b, j) => {
      if (!nets.some((s) => inSubnet(s, b.ip))) throw invalid(`${f}.backends.${j}.ip`, `${b.ip} is on none of the router's networks`);
    });
  });
}

/** The haproxy serving this router's configuration, if one runs (any namespace). */
export function findHaproxy(p: HaproxyPaths): number | undefined {
  try {
    const pid = Number(readFileSync(p.pid, 'utf8').trim().split('\n')[0]);
    const argv = Number.isInteger(pid) && pid > 1 ? cmdlineOf(pid) : undefined;
    if (argv && /(^|\/)haproxy$/.test(argv[0] ?? '') && argv.includes(p.cfg)) return pid;
  } catch {
    /* no pid file */
  }
  return undefined;
}

const stop = (pid: number): Promise<void> => stopPid(pid, 2_000);

/** One command on haproxy's stats socket (the "runtime API"); its whole answer. */
export function haproxyCommand(sock: string, cmd: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(sock);
    let out = '';
    const t = setTimeout(() => s.destroy(new Error(`haproxy stats socket: no answer to "${cmd}" in ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.end(`${cmd}\n`));
    s.on('data', (d: string) => (out += d));
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

export interface LbRouter {
  spec: RouterSpecT;
  namespace: string;
  dir: string;
}

/**
 * Make the router's haproxy serve exactly its listeners: nothing to serve → stopped; otherwise the
 * configuration (and certificates) written, checked, and haproxy started or reloaded when
 * anything changed or it does not run in the router's current namespace. Returns "changed".
 */
export async function ensureLoadBalancer(r: LbRouter, signal?: AbortSignal): Promise<boolean> {
  const p = haproxyPaths(r.dir);
  const listeners = r.spec.loadBalancers ?? [];
  const text = renderHaproxyConfig(r.spec.routerUuid, listeners, p);
  let pid = findHaproxy(p);
  if (text === undefined) {
    if (pid !== undefined) await stop(pid);
    rmSync(p.dir, { recursive: true, force: true });
    rmSync(p.sock, { force: true });
    return pid !== undefined;
  }
  ensureDir(p.dir);
  ensureDir(p.certDir);
  ensureDir(SOCKET_DIR);
  let files = false;
  for (const l of proxied(listeners)) if (l.certificate && writeIfChanged(certFile(p, l.certificate.certificateUuid), l.certificate.pem, 0o600)) files = true;
  const next = `${p.cfg}.next`;
  const cfgChanged = !existsSync(p.cfg) || readFileSync(p.cfg, 'utf8') !== text;
  if (pid !== undefined && !inNamespace(pid, r.namespace)) {
    // the namespace was deleted and made again: that haproxy serves a namespace nobody reaches
    await stop(pid);
    pid = undefined;
  }
  if (pid !== undefined && !cfgChanged && !files) return false;
  writeIfChanged(next, text, 0o600);
  await exec('haproxy', ['-c', '-f', next], { signal, timeoutMs: 20_000, errorCode: 'NETWORK_ERROR' });
  if (pid !== undefined) {
    // keep UP/DOWN across the reload (haproxy would otherwise start every server UP)
    const state = await haproxyCommand(p.sock, 'show servers state').catch(() => '');
    if (state.startsWith('1')) writeIfChanged(p.state, state, 0o600);
  }
  renameSync(next, p.cfg);
  const args = ['-D', '-f', p.cfg, '-p', p.pid];
  if (pid !== undefined) args.push('-x', p.sock, '-sf', String(pid));
  await exec('haproxy', args, { netns: r.namespace, signal, timeoutMs: 20_000, errorCode: 'NETWORK_ERROR' });
  for (let i = 0; i < 100; i++) {
    const now = findHaproxy(p);
    if (now !== undefined && now !== pid && inNamespace(now, r.namespace)) return true;
    await sleep(20);
  }
  throw new TStackError('NETWORK_ERROR', `haproxy of router ${r.spec.routerUuid} did not start (${p.cfg})`);
}

/** Stop the router's haproxy (router deleted or stopped). */
export async function stopLoadBalancer(dir: string): Promise<boolean> {
  const p = haproxyPaths(dir);
  const pid = findHaproxy(p);
  rmSync(p.sock, { force: true });
  if (pid === undefined) return false;
  await stop(pid);
  return true;
}

/** Watchdog: listeners to serve but no haproxy in the router's namespace. */
export function loadBalancerBroken(r: LbRouter): boolean {
  if (proxied(r.spec.loadBalancers ?? []).length === 0) return false;
  const pid = findHaproxy(haproxyPaths(r.dir));
  return pid === undefined || !inNamespace(pid, r.namespace);
}

/** `show stat` as records keyed by the CSV header's column names. */
export function parseStat(csv: string): Array<Record<string, string>> {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const head = lines.shift();
  if (!head?.startsWith('# ')) return [];
  const cols = head.slice(2).split(',');
  return lines.map((l) => {
    const v = l.split(',');
    return Object.fromEntries(cols.map((c, i) => [c, v[i] ?? '']));
  });
}

export async function loadBalancerStatus(r: LbRouter): Promise<{ running: boolean; listeners: Array<{ listenerUuid: string; servers: Array<{ vmNicUuid: string; ip: string; status: string; checkStatus?: string; lastChangeSec?: number; currentSessions?: number; totalSessions?: number }> }> }> {
  const p = haproxyPaths(r.dir);
  const ls = proxied(r.spec.loadBalancers ?? []);
  const running = findHaproxy(p) !== undefined;
  const rows = running ? parseStat(await haproxyCommand(p.sock, 'show stat').catch(() => '')) : [];
  const num = (s: string | undefined): number | undefined => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);
  return {
    running,
    listeners: ls.map((l: RouterLbListenerT) => ({
      listenerUuid: l.listenerUuid,
      servers: l.backends.map((b) => {
        const row = rows.find((x) => x.pxname === backendName(l.listenerUuid) && x.svname === serverName(b.vmNicUuid));
        const out: { vmNicUuid: string; ip: string; status: string; checkStatus?: string; lastChangeSec?: number; currentSessions?: number; totalSessions?: number } = { vmNicUuid: b.vmNicUuid, ip: b.ip, status: row?.status || (running ? 'UNKNOWN' : 'DOWN') };
        if (row?.check_status) out.checkStatus = row.check_status;
        const lc = num(row?.lastchg);
        if (lc !== undefined) out.lastChangeSec = lc;
        const sc = num(row?.scur);
        if (sc !== undefined) out.currentSessions = sc;
        const st = num(row?.stot);
        if (st !== undefined) out.totalSessions = st;
        return out;
      }),
    })),
  };
}
