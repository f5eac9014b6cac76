// Extra hypervisor hosts for tests: the same scripts/nshost that `scripts/aio add-host` uses,
// with run-prefixed names, a random management subnet and state under /tmp/<runId>-nshosts.
//   const f = await nsFabric(cleanup, { links: [{ bridge: 'tXbr', ifname: 'tXd0' }], private: [layout.etcDir, …] });
//   const h2 = await nsHostUp(f, 2, cleanup);      // h2.ip: add it over SSH like any server
//   await nsExec(f, 2, 'ip', ['-br', 'link']);
// This machine is host 1 at f.ip(1) (its libvirtd exposed there for migrations into it).
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { exec, type ExecResult } from '../../shared/exec.js';
import type { Cleanup } from './cleanup.js';
import { REPO_ROOT } from './guest.js';
import { runId } from './tmp.js';

export interface NsFabric {
  /** First three octets of the management subnet. */
  net: string;
  bridge: string;
  dir: string;
  env: Record<string, string>;
  ip(n: number): string;
  /** Where a private directory of host n is seen from this machine. */
  privateDir(n: number, path: string): string;
  private: string[];
}

const SCRIPT = join(REPO_ROOT, 'scripts/nshost');

function run(f: NsFabric, args: string[], timeoutMs = 120_000): Promise<ExecResult> {
  return exec(SCRIPT, args, { env: f.env, timeoutMs });
}

export async function nsFabric(cleanup: Cleanup, o: { links?: Array<{ bridge: string; ifname: string }>; private?: string[] } = {}): Promise<NsFabric> {
  const rid = runId();
  const net = `10.${randomInt(201, 250)}.${randomInt(1, 250)}`;
  const dir = `/tmp/${rid}-nshosts`;
  const priv = o.private ?? [];
  const env = {
    NSH_DIR: dir,
    NSH_NET: net,
    NSH_FABRIC: `${rid}fab`,
    NSH_PREFIX: rid,
    NSH_LINKS: (o.links ?? []).map((l) => `${l.bridge}:${l.ifname}`).join(' '),
    NSH_PRIVATE: priv.join(' '),
  };
  const f: NsFabric = {
    net,
    bridge: env.NSH_FABRIC,
    dir,
    env,
    private: priv,
    ip: (n) => `${net}.${n}`,
    privateDir: (n, path) => {
      const i = priv.indexOf(path);
      if (i < 0) throw new Error(`${path} is not a private directory of the hosts`);
      return `${dir}/h${n}/private/${i}`;
    },
  };
  cleanup.add(async () => {
    await run(f, ['fabric-down']);
    await exec('rm', ['-rf', '--', dir]);
  }, `fabric ${env.NSH_FABRIC}`);
  await run(f, ['fabric-up']);
  return f;
}

export interface NsHost {
  n: number;
  ip: string;
  holder: number;
  /** libvirt URI of the host's own libvirtd, from this machine. */
  uri: string;
  down(): Promise<void>;
}

export async function nsHostUp(f: NsFabric, n: number, cleanup: Cleanup): Promise<NsHost> {
  const down = async (): Promise<void> => void (await run(f, ['down', String(n)]));
  cleanup.add(down, `namespaced host ${n}`);
  const r = await run(f, ['up', String(n)]);
  return { n, ip: f.ip(n), holder: Number(r.stdout.trim().split('\n').pop()), uri: `qemu+tcp://${f.ip(n)}/system`, down };
}

export function nsExec(f: NsFabric, n: number, cmd: string, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
  return run(f, ['exec', String(n), cmd, ...args], timeoutMs);
}
