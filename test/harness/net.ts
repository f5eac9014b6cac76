// Network namespaces, bridges and veth pairs for tests. Everything created is registered in the
// Cleanup passed in (default: the process-wide one). Names must fit IFNAMSIZ (15 chars) and
// should start with runId(). Test bridges get no route, NAT or forwarding toward the uplink:
// they carry only traffic between the test's own namespaces, taps and VMs.
import { exec, execOk, execOut, type ExecOptions, type ExecResult } from '../../shared/exec.js';
import { globalCleanup, type Cleanup } from './cleanup.js';

const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

function checkName(kind: string, name: string): void {
  if (!IFNAME_RE.test(name)) throw new Error(`${kind} name '${name}' is invalid or longer than 15 characters`);
}

async function ip(args: string[], netns?: string): Promise<string> {
  return execOut('ip', netns ? ['-n', netns, ...args] : args, { timeoutMs: 20_000, errorCode: 'NETWORK_ERROR' });
}

export async function linkExists(name: string, netns?: string): Promise<boolean> {
  return execOk('ip', netns ? ['-n', netns, 'link', 'show', 'dev', name] : ['link', 'show', 'dev', name], { timeoutMs: 10_000 });
}

export async function netnsExists(name: string): Promise<boolean> {
  const out = await execOut('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  return out.split('\n').some((l) => l.split(' ')[0] === name);
}

/** ip netns add <name> (with lo up). */
export async function createNetns(name: string, cleanup: Cleanup = globalCleanup): Promise<string> {
  checkName('netns', name);
  await ip(['netns', 'add', name]);
  cleanup.add(() => deleteNetns(name), `netns ${name}`);
  await ip(['link', 'set', 'lo', 'up'], name);
  return name;
}

/** Kill what still runs in the namespace (processes we started there), then delete it. */
export async function deleteNetns(name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  const pids = (await execOut('ip', ['netns', 'pids', name], { timeoutMs: 10_000 }).catch(() => ''))
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 1);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await ip(['netns', 'delete', name]);
}

/** A Linux bridge, up, STP off and forward delay 0 (ports forward at once). */
export async function createBridge(name: string, cleanup: Cleanup = globalCleanup): Promise<string> {
  checkName('bridge', name);
  await ip(['link', 'add', 'name', name, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  cleanup.add(() => deleteLink(name), `bridge ${name}`);
  await ip(['link', 'set', name, 'up']);
  return name;
}

/** A veth pair a <-> b, both up (in the root namespace). Deleting either end removes both. */
export async function createVeth(a: string, b: string, cleanup: Cleanup = globalCleanup): Promise<[string, string]> {
  checkName('veth', a);
  checkName('veth', b);
  await ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
  cleanup.add(async () => {
    await deleteLink(a);
    await deleteLink(b);
  }, `veth ${a}/${b}`);
  await ip(['link', 'set', a, 'up']);
  await ip(['link', 'set', b, 'up']);
  return [a, b];
}

/** A persistent tap device (for a QEMU -netdev tap,ifname=… or a libvirt <interface type='ethernet'>), up, optionally on a bridge. */
export async function createTap(name: string, bridge?: string, cleanup: Cleanup = globalCleanup): Promise<string> {
  checkName('tap', name);
  await ip(['tuntap', 'add', 'dev', name, 'mode', 'tap']);
  cleanup.add(() => deleteLink(name), `tap ${name}`);
  if (bridge) await ip(['link', 'set', name, 'master', bridge]);
  await ip(['link', 'set', name, 'up']);
  return name;
}

/** Delete a link in the root namespace (or netns) if it exists. */
export async function deleteLink(name: string, netns?: string): Promise<void> {
  if (await linkExists(name, netns)) await ip(['link', 'del', name], netns);
}

/** Move an interface into a namespace and bring it up there. */
export async function moveToNetns(ifname: string, ns: string): Promise<void> {
  await ip(['link', 'set', ifname, 'netns', ns]);
  await ip(['link', 'set', ifname, 'up'], ns);
}

/** Enslave an interface (root namespace) to a bridge. */
export async function attachToBridge(ifname: string, bridge: string): Promise<void> {
  await ip(['link', 'set', ifname, 'master', bridge]);
  await ip(['link', 'set', ifname, 'up']);
}

/** ip addr add <cidr> dev <ifname> (in netns when given). */
export async function addAddress(ifname: string, cidr: string, netns?: string): Promise<void> {
  await ip(['addr', 'add', cidr, 'dev', ifname], netns);
}

/** Run a program inside a namespace (ip netns exec), through shared/exec. */
export async function nsExec(ns: string, cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return exec(cmd, args, { timeoutMs: 30_000, ...opts, netns: ns });
}
