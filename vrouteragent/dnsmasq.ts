// One dnsmasq per service namespace. It daemonizes (own session), so it keeps serving DHCP
// while the agent is down or restarting; the agent finds it again by its pid file (checked
// against /proc: comm = dnsmasq and our --conf-file on the command line), or by scanning /proc.
import { readFileSync, readdirSync, existsSync, readlinkSync } from 'node:fs';
import { TStackError } from '../shared/errors.js';
import { exec } from '../shared/exec.js';
import type { DnsmasqPaths as AllPaths } from './render/dnsmasq.js';
import { cmdlineOf, inNamespace, sleep } from './proc.js';

/** What finding, starting and stopping a dnsmasq reads of its paths (flat L3s and PXE servers alike). */
export type DnsmasqPaths = Pick<AllPaths, 'dir' | 'conf' | 'pid' | 'log'>;


function isOurs(pid: number, p: DnsmasqPaths): boolean {
  const argv = cmdlineOf(pid);
  if (!argv || !argv[0] || !/(^|\/)dnsmasq$/.test(argv[0])) return false;
  return argv.includes(`--conf-file=${p.conf}`) && samePidNamespace(pid);
}

let ownPidNs: string | undefined;

/** A dnsmasq in another PID namespace (a container, or a namespaced host on this machine) is another host's. */
function samePidNamespace(pid: number): boolean {
  try {
    // a process never changes its own PID namespace: read once
    ownPidNs ??= readlinkSync('/proc/self/ns/pid');
    return readlinkSync(`/proc/${pid}/ns/pid`) === ownPidNs;
  } catch {
    return false;
  }
}

/**
 * Field 22 of /proc/<pid>/stat, the process's start time (clock ticks since boot): with the pid it
 * names one process for good (a reused pid has another). Undefined when no such process runs.
 */
export function startTimeOf(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2, in parentheses) may hold spaces: count from the last ')'
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ', 20);
    // a killed process not yet reaped (zombie, dead) keeps its stat line: it runs no more
    return f[0] === 'Z' || f[0] === 'X' ? undefined : f[19];
  } catch {
    return undefined;
  }
}

/** The pid of the dnsmasq serving this directory, if it runs. */
export function findDnsmasq(p: DnsmasqPaths): number | undefined {
  try {
    const pid = Number(readFileSync(p.pid, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 1 && isOurs(pid, p)) return pid;
  } catch {
    /* no pid file */
  }
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (isOurs(pid, p)) return pid;
  }
  return undefined;
}

export async function startDnsmasq(ns: string, p: DnsmasqPaths, signal?: AbortSignal): Promise<number> {
  // dnsmasq forks; the parent exits once the daemon is set up (or fails with its error)
  await exec('dnsmasq', [`--conf-file=${p.conf}`], { netns: ns, signal, timeoutMs: 20_000, errorCode: 'NETWORK_ERROR' });
  for (let i = 0; i < 50; i++) {
    const pid = findDnsmasq(p);
    if (pid !== undefined) {
      if (!inNamespace(pid, ns)) throw new TStackError('NETWORK_ERROR', `dnsmasq ${pid} for ${p.dir} is not in namespace ${ns}`);
      return pid;
    }
    await sleep(20);
  }
  throw new TStackError('NETWORK_ERROR', `dnsmasq for ${p.dir} did not start (see ${p.log})`);
}

export async function stopDnsmasq(p: DnsmasqPaths): Promise<boolean> {
  const pid = findDnsmasq(p);
  if (pid === undefined) return false;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return false;
  }
  for (let i = 0; i < 100; i++) {
    if (!existsSync(`/proc/${pid}`) || !isOurs(pid, p)) return true;
    await sleep(20);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  return true;
}

/** SIGHUP (`known`: the pid just found): re-read hosts/opts/addn-hosts/servers files; leases and other clients stay. */
export function reloadDnsmasq(p: DnsmasqPaths, known?: number): boolean {
  const pid = known ?? findDnsmasq(p);
  if (pid === undefined) return false;
  process.kill(pid, 'SIGHUP');
  return true;
}
