// IPsec of a VPC router: one charon (strongSwan's IKE daemon) per router namespace, configured by
// render/strongswan.ts from the router's desired state and loaded with swanctl over a vici socket
// in the router's state directory. charon runs with a private tmpfs on /run (its pid file and
// stroke socket would otherwise clash with every other router's), started through setsid so it
// outlives an agent restart; the agent finds it again by a pid file checked against /proc.
// Data plane: kernel ESP (XFRM) when the probe finds it, else kernel-libipsec (userspace ESP over
// the TUN device ipsec0, routes in table 220): this host's kernel has no ESP.
import { existsSync, readFileSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs';
import { TStackError, invalid } from '../shared/errors.js';
import { exec, execOk } from '../shared/exec.js';
import type { RouterIpsecConnectionT } from '../shared/protocol/ipsec.js';
import type { RouterSpecT } from '../shared/protocol/vpc.js';
import { connectionDigest, connName, ipsecPaths, renderStrongswanConf, renderSwanctlConf, VICI_URI, type IpsecPaths } from './render/strongswan.js';
import { parseCidr, type Subnet } from './ip.js';
import { uuidHex } from './names.js';
import { inNamespace, readProc, sleep, stopPid } from './proc.js';
import { ensureDir, readJson, writeIfChanged, writeJson } from './state.js';

const CHARON = '/usr/lib/ipsec/charon';
const overlaps = (a: Subnet, b: Subnet): boolean => a.first <= b.last && b.first <= a.last;

/** Semantic checks of the connections against the rest of the router (the schema checked shapes). */
export function validateIpsec(r: RouterSpecT, field = 'router.ipsec'): void {
  const mine = new Set([r.public.ip, ...r.vips]);
  const ids = new Set<string>();
  const ends = new Map<string, number>();
  (r.ipsec ?? []).forEach((c, i) => {
    const f = `${field}.${i}`;
    const id = uuidHex(c.connectionUuid);
    if (ids.has(id)) throw invalid(`${f}.connectionUuid`, `connection ${c.connectionUuid} is given twice`);
    ids.add(id);
    if (!mine.has(c.vip)) throw invalid(`${f}.vip`, `${c.vip} is neither the router's public IP nor one of its VIPs`);
    if (mine.has(c.peerAddress)) throw invalid(`${f}.peerAddress`, `${c.peerAddress} is an address of this router`);
    const k = `${c.vip}>${c.peerAddress}`;
    if (ends.has(k)) throw invalid(`${f}.peerAddress`, `${c.vip} → ${c.peerAddress} is also ipsec.${ends.get(k)!}`);
    ends.set(k, i);
    const local = c.localCidrs.map(parseCidr);
    c.peerCidrs.forEach((pc, j) => {
      const p = parseCidr(pc);
      const hit = local.findIndex((l) => overlaps(l, p));
      if (hit >= 0) throw invalid(`${f}.peerCidrs.${j}`, `${pc} overlaps the local CIDR ${c.localCidrs[hit]!}`);
    });
  });
}

/** The charon running with this router's strongswan.conf, if any (any namespace). */
export function findCharon(p: IpsecPaths): number | undefined {
  try {
    const pid = Number(readFileSync(p.pid, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const argv = readProc(pid, 'cmdline');
    if (!argv || !/(^|\/)charon$/.test(argv[0] ?? '')) return undefined;
    return readProc(pid, 'environ')?.includes(`STRONGSWAN_CONF=${p.strongswanConf}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

const stop = (pid: number): Promise<void> => stopPid(pid, 3_000);

/** Kernel ESP in this namespace? (an ESP state is added and removed: the namespace's own SAD) */
const espCache = new Map<string, boolean>();
export async function kernelEsp(ns: string): Promise<boolean> {
  const known = espCache.get('host');
  if (known !== undefined) return known;
  const sa = ['src', '192.0.2.1', 'dst', '192.0.2.2', 'proto', 'esp', 'spi', '0x00000101'];
  const ok = await execOk('ip', ['-n', ns, 'xfrm', 'state', 'add', ...sa, 'mode', 'tunnel', 'enc', 'cbc(aes)', `0x${'11'.repeat(16)}`, 'auth-trunc', 'hmac(sha256)', `0x${'22'.repeat(32)}`, '128']);
  if (ok) await execOk('ip', ['-n', ns, 'xfrm', 'state', 'del', ...sa]);
  espCache.set('host', ok); // a kernel property: probed once per agent
  return ok;
}

export interface IpsecRouter {
  spec: RouterSpecT;
  namespace: string;
  dir: string;
}

/** swanctl on the router's charon (run in the ipsec dir: the socket is named relative to it). */
const swanctl = (p: IpsecPaths, args: string[], ns: string, signal?: AbortSignal) =>
  exec('swanctl', [...args, '--uri', VICI_URI], { netns: ns, cwd: p.dir, signal, timeoutMs: 20_000, errorCode: 'NETWORK_ERROR' });
const swanctlOk = (p: IpsecPaths, args: string[], ns: string, timeoutMs = 10_000) => execOk('swanctl', [...args, '--uri', VICI_URI], { netns: ns, cwd: p.dir, timeoutMs });

async function startCharon(p: IpsecPaths, ns: string, signal?: AbortSignal): Promise<number> {
  rmSync(p.vici, { force: true });
  rmSync(p.pid, { force: true });
  // sh only mounts the private /run, records its pid (which exec keeps) and becomes charon; the
  // paths are positional arguments, never part of the script
  const script = 'cd "$5" || exit 1; exec </dev/null >>"$3" 2>&1; echo $$ >"$2"; mount -t tmpfs -o size=1m,mode=0755 tstack-ipsec /run && exec env STRONGSWAN_CONF="$1" "$4"';
  await exec('setsid', ['-f', 'ip', 'netns', 'exec', ns, 'sh', '-c', script, 'tstack-charon', p.strongswanConf, p.pid, `${p.log}.out`, CHARON, p.dir], { signal, timeoutMs: 10_000, errorCode: 'NETWORK_ERROR' });
  for (let i = 0; i < 250; i++) {
    const pid = findCharon(p);
    if (pid !== undefined && existsSync(p.vici) && (await swanctlOk(p, ['--stats'], ns, 5_000))) return pid;
    await sleep(40);
  }
  throw new TStackError('NETWORK_ERROR', `charon of ${p.dir} did not start (see ${p.log})`);
}

/**
 * Make the router's charon serve exactly its connections: none → stopped; otherwise the files
 * written, charon (re)started when it is not running in the router's current namespace or its
 * daemon settings changed, the connections loaded when anything changed (swanctl unloads the
 * ones gone), and the SAs of removed or changed connections torn down (a changed one is brought
 * up again at once). Returns "changed".
 */
export async function ensureIpsec(r: IpsecRouter, signal?: AbortSignal): Promise<boolean> {
  const p = ipsecPaths(r.dir);
  const conns = r.spec.ipsec ?? [];
  let pid = findCharon(p);
  if (conns.length === 0) {
    if (pid !== undefined) await stop(pid);
    rmSync(p.dir, { recursive: true, force: true });
    return pid !== undefined;
  }
  ensureDir(p.dir);
  const userspace = !(await kernelEsp(r.namespace));
  const daemon = writeIfChanged(p.strongswanConf, renderStrongswanConf(r.spec.routerUuid, p, userspace));
  const conf = writeIfChanged(p.swanctlConf, renderSwanctlConf(r.spec.routerUuid, conns), 0o600);
  if (pid !== undefined && (daemon || !inNamespace(pid, r.namespace))) {
    // a re-made namespace: that charon serves a namespace nobody reaches
    await stop(pid);
    pid = undefined;
  }
  const started = pid === undefined;
  if (started) await startCharon(p, r.namespace, signal);
  const before = started ? {} : readJson<Record<string, string>>(p.loaded, {});
  const now = Object.fromEntries(conns.map((c) => [connName(c.connectionUuid), connectionDigest(c)]));
  if (!started && !conf && Object.keys(before).length === Object.keys(now).length && Object.entries(now).every(([k, v]) => before[k] === v)) {
    await reviveIpsec(r);
    return false;
  }
  await swanctl(p, ['--load-all', '--noprompt', '--file', p.swanctlConf], r.namespace, signal);
  for (const [name, digest] of Object.entries(before)) {
    if (now[name] === digest) continue;
    await swanctlOk(p, ['--terminate', '--ike', name, '--force', '--timeout', '3'], r.namespace);
    // changed: up again now with the new selectors (a removed one stays down)
    if (now[name] !== undefined) await swanctlOk(p, ['--initiate', '--child', name, '--timeout', '2'], r.namespace);
  }
  writeJson(p.loaded, now);
  return true;
}

/** The SAs charon has, by connection name (an ESTABLISHED one wins over a duplicate in another state). */
async function listSas(p: IpsecPaths, ns: string): Promise<Map<string, RawNode>> {
  const sas = new Map<string, RawNode>();
  const out = await exec('swanctl', ['--list-sas', '--raw', '--uri', VICI_URI], { netns: ns, cwd: p.dir, timeoutMs: 10_000, quiet: true }).catch(() => undefined);
  for (const m of parseRaw(out?.stdout ?? '')) {
    for (const [name, sa] of Object.entries(m)) {
      if (typeof sa !== 'object' || Array.isArray(sa)) continue;
      if (!sas.has(name) || sa.state === 'ESTABLISHED') sas.set(name, sa);
    }
  }
  return sas;
}

const childrenOf = (sa: RawNode | undefined): RawNode[] => {
  const c = sa?.['child-sas'];
  return c && typeof c === 'object' && !Array.isArray(c) ? Object.values(c).filter((x): x is RawNode => typeof x === 'object' && !Array.isArray(x)) : [];
};

/**
 * Connections charon has given up on are initiated again: no IKE_SA at all (torn down by the
 * peer), or an IKE_SA whose CHILD_SA failed ("keeping IKE_SA"). One being negotiated is left alone.
 * Returns the names initiated.
 */
export async function reviveIpsec(r: IpsecRouter): Promise<string[]> {
  const p = ipsecPaths(r.dir);
  if ((r.spec.ipsec ?? []).length === 0 || findCharon(p) === undefined) return [];
  const sas = await listSas(p, r.namespace);
  const out: string[] = [];
  for (const c of r.spec.ipsec ?? []) {
    const name = connName(c.connectionUuid);
    const sa = sas.get(name);
    const live = sa !== undefined && (sa.state !== 'ESTABLISHED' || childrenOf(sa).some((x) => x.state === 'INSTALLED' || x.state === 'CREATED' || x.state === 'REKEYING' || x.state === 'REKEYED'));
    if (live) continue;
    await swanctlOk(p, ['--initiate', '--child', name, '--timeout', '1'], r.namespace);
    out.push(name);
  }
  return out;
}

/** Stop the router's charon (router deleted or stopped). */
export async function stopIpsec(dir: string): Promise<boolean> {
  const p = ipsecPaths(dir);
  const pid = findCharon(p);
  if (pid === undefined) return false;
  await stop(pid);
  return true;
}

/** charon's log past this size is moved aside (one old copy, `.1`) and started anew. */
export const CHARON_LOG_MAX_BYTES = 4 * 1024 * 1024;

const sizeOf = (file: string): number | undefined => {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
};

/** Which of charon's log files are over the cap: `log` is moved aside, `out` (stderr, O_APPEND) cut. */
export function logsToCap(sizes: { log?: number; out?: number }, max: number): { rotate: boolean; truncate: boolean } {
  return { rotate: (sizes.log ?? 0) > max, truncate: (sizes.out ?? 0) > max };
}

/**
 * Watchdog step: charon's filelog grows without bound (strongSwan has no size cap). Past `max`
 * it is renamed to charon.log.1 (replacing the older copy) and charon reopens its loggers
 * (swanctl --reload-settings; append = no makes a fresh file). Its stdout/stderr file is opened
 * O_APPEND, so it is simply cut to zero. Returns what was done.
 */
export async function capIpsecLogs(r: IpsecRouter, max = CHARON_LOG_MAX_BYTES): Promise<{ rotated: boolean; truncated: boolean }> {
  const p = ipsecPaths(r.dir);
  const out = `${p.log}.out`;
  const todo = logsToCap({ log: sizeOf(p.log), out: sizeOf(out) }, max);
  if (todo.truncate) truncateSync(out, 0);
  if (todo.rotate) {
    renameSync(p.log, `${p.log}.1`);
    // a charon that is not running opens a fresh file when it starts
    if (findCharon(p) !== undefined) await swanctlOk(p, ['--reload-settings'], r.namespace);
  }
  return { rotated: todo.rotate, truncated: todo.truncate };
}

/** Watchdog: connections to serve but no charon in the router's namespace. */
export function ipsecBroken(r: IpsecRouter): boolean {
  if ((r.spec.ipsec ?? []).length === 0) return false;
  const pid = findCharon(ipsecPaths(r.dir));
  return pid === undefined || !inNamespace(pid, r.namespace);
}

export type RawNode = { [k: string]: string | string[] | RawNode };

/** swanctl's `--raw` output (vici messages as `name {k=v k=[a b] sub {…}}`) as nested records. */
export function parseRaw(text: string): RawNode[] {
  const tokens = text.match(/[^\s{}=[\]]+|[{}=[\]]/g) ?? [];
  let i = 0;
  const block = (): RawNode => {
    const out: RawNode = {};
    while (i < tokens.length && tokens[i] !== '}') {
      const key = tokens[i++]!;
      if (tokens[i] === '{') {
        i++;
        out[key] = block();
        i++; // }
      } else if (tokens[i] === '=') {
        i++;
        if (tokens[i] === '[') {
          i++;
          const xs: string[] = [];
          while (i < tokens.length && tokens[i] !== ']') xs.push(tokens[i++]!);
          i++;
          out[key] = xs;
        } else out[key] = tokens[i++] ?? '';
      }
    }
    return out;
  };
  const msgs: RawNode[] = [];
  while (i < tokens.length) {
    // "<type> <event> {…}", e.g. "list-sa event {…}" or "list-sas reply {}"
    while (i < tokens.length && tokens[i] !== '{') i++;
    if (i >= tokens.length) break;
    i++;
    msgs.push(block());
    i++;
  }
  return msgs;
}

const ERROR_RE = /fail|error|unable|giving up|not responding|NO_PROPOSAL|TS_UNACCEPTABLE|no shared key|no matching|AUTH.*(failed|invalid)|timed out/i;

/** The last failure logged for each connection (charon's log, `ike_name = yes` prefixes `<name|n>`). */
export function lastErrors(log: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of log.split('\n')) {
    const m = /^\S+ \S+ \d+\[(\w+)\] <(c-[0-9a-f]{32})\|\d+> (.*)$/.exec(line);
    if (m && ERROR_RE.test(m[3]!)) out.set(m[2]!, `${m[1]}: ${m[3]!}`);
  }
  return out;
}

function tail(file: string, bytes = 256 * 1024): string {
  try {
    const b = readFileSync(file);
    return b.subarray(Math.max(0, b.length - bytes)).toString('utf8');
  } catch {
    return '';
  }
}

export async function ipsecStatus(r: IpsecRouter): Promise<{ running: boolean; dataPlane?: string; connections: Array<{ connectionUuid: string; status: 'up' | 'down'; ikeState?: string; childState?: string; lastError?: string }> }> {
  const p = ipsecPaths(r.dir);
  const conns: RouterIpsecConnectionT[] = r.spec.ipsec ?? [];
  const running = findCharon(p) !== undefined;
  const sas = running ? await listSas(p, r.namespace) : new Map<string, RawNode>();
  const errors = lastErrors(tail(p.log));
  const esp = espCache.get('host');
  const dataPlane = running && esp !== undefined ? (esp ? 'kernel' : 'libipsec') : undefined;
  return {
    running,
    ...(dataPlane ? { dataPlane } : {}),
    connections: conns.map((c) => {
      const name = connName(c.connectionUuid);
      const sa = sas.get(name);
      const children = childrenOf(sa);
      const child = children.find((x) => x.state === 'INSTALLED') ?? children[0];
      const ikeState = typeof sa?.state === 'string' ? sa.state : undefined;
      const childState = typeof child?.state === 'string' ? child.state : undefined;
      const err = errors.get(name);
      return {
        connectionUuid: c.connectionUuid,
        status: ikeState === 'ESTABLISHED' && childState === 'INSTALLED' ? 'up' : 'down',
        ...(ikeState ? { ikeState } : {}),
        ...(childState ? { childState } : {}),
        ...(err ? { lastError: err } : {}),
      };
    }),
  };
}
