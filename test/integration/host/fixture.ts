// Shared set-up of the host tests: a built tstack tree in a temp dir (a copy of the repo's dist/
// when it is up to date, else tsc --outDir, so the repo's own dist/ is not touched), its bundled agent package, an SSH key authorized for root on
// this machine's sshd (removed afterwards), and a temp on-host layout with free ports.
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../../shared/exec.js';
import { REPO_ROOT } from '../../harness/guest.js';
import { freePort } from '../../harness/ports.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import type { Cleanup } from '../../harness/cleanup.js';
import { buildPackage, type BuiltPackage } from '../../../controller/host/package.js';
import { AGENTS, pidPath, type AgentName, type HostLayout } from '../../../controller/host/render.js';
import { newEd25519KeyPair } from '../../../controller/host/sshkeys.js';

let treeP: Promise<string> | undefined;
const longLived: string[] = [];
process.once('exit', () => {
  for (const d of longLived) rmSync(d, { recursive: true, force: true });
});

/** What a deployed tree runs (the tests and benches are not part of it). */
const RUNTIME_DIRS = ['shared', 'controller', 'kvmagent', 'storageagent', 'vrouteragent', 'simulator'];

/**
 * True when the repo's dist/ was compiled from the sources as they are (scripts/setup builds it
 * right before the suite): every .ts of RUNTIME_DIRS has its .js, none older than the .ts or
 * than tsconfig.json. Otherwise (a working copy being edited) the tree is compiled afresh.
 */
export function repoDistIsFresh(): boolean {
  const since = statSync(join(REPO_ROOT, 'tsconfig.json')).mtimeMs;
  const fresh = (rel: string): boolean => {
    for (const e of readdirSync(join(REPO_ROOT, rel), { withFileTypes: true })) {
      const r = join(rel, e.name);
      if (e.isDirectory()) {
        if (!fresh(r)) return false;
      } else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const js = join(REPO_ROOT, 'dist', r.replace(/\.ts$/, '.js'));
        if (!existsSync(js)) return false;
        const t = statSync(js).mtimeMs;
        if (t < since || t < statSync(join(REPO_ROOT, r)).mtimeMs) return false;
      }
    }
    return true;
  };
  return RUNTIME_DIRS.every((d) => !existsSync(join(REPO_ROOT, d)) || fresh(d));
}

/** A built tree (dist/, package.json, lock, scripts/setup, node_modules link), once per process. */
export function builtTree(): Promise<string> {
  treeP ??= (async () => {
    const root = (await exec('mktemp', ['-d', `/tmp/${runId()}-hosttree-XXXXXX`])).stdout.trim();
    longLived.push(root);
    if (repoDistIsFresh()) {
      // the same tsc output: no second compile of the whole repo (~15-30 s, more on a busy machine)
      for (const d of RUNTIME_DIRS) if (existsSync(join(REPO_ROOT, 'dist', d))) cpSync(join(REPO_ROOT, 'dist', d), join(root, 'dist', d), { recursive: true, preserveTimestamps: true });
    } else {
      // tsc emits even when other work-in-progress files have type errors
      await exec(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(REPO_ROOT, 'tsconfig.json'), '--outDir', join(root, 'dist'), '--sourceMap', 'false'], { timeoutMs: 600_000, okCodes: [0, 1, 2] });
    }
    for (const a of AGENTS) if (!existsSync(join(root, 'dist', a, 'main.js'))) throw new Error(`tsc did not produce dist/${a}/main.js`);
    copyFileSync(join(REPO_ROOT, 'package.json'), join(root, 'package.json'));
    copyFileSync(join(REPO_ROOT, 'package-lock.json'), join(root, 'package-lock.json'));
    mkdirSync(join(root, 'scripts'));
    copyFileSync(join(REPO_ROOT, 'scripts/setup'), join(root, 'scripts/setup'));
    chmodSync(join(root, 'scripts/setup'), 0o755);
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
    return root;
  })();
  return treeP;
}

/** The agent package cache of a built tree: every controller of this process passes it as
 * hostOptions.packageCacheDir, so the package (npm ls + a tar of the production modules, ~15 s)
 * is built once per run instead of once per controller data dir. */
export const pkgCache = (tree: string): string => join(tree, '.pkgcache');

let pkgP: Promise<BuiltPackage> | undefined;
export function bundledPackage(): Promise<BuiltPackage> {
  pkgP ??= (async () => {
    const root = await builtTree();
    return buildPackage({ root, bundleNodeModules: true }, pkgCache(root));
  })();
  return pkgP;
}

export interface TestKey {
  privateKey: string;
  publicKey: string;
  comment: string;
}

/** A fresh ed25519 key authorized for root (a line tagged with the run id, removed by cleanup). */
export function authorizedKey(cleanup: Cleanup, tag = 'key'): TestKey {
  const comment = `tstack-test-${runId()}-${tag}`;
  const k = newEd25519KeyPair(comment);
  const publicKey = k.public.trim();
  authorize(publicKey, cleanup, comment);
  return { privateKey: k.private, publicKey, comment };
}

/** Append a key line to /root/.ssh/authorized_keys; cleanup removes every line carrying `tag`. */
export function authorize(line: string, cleanup: Cleanup, tag: string): void {
  const f = '/root/.ssh/authorized_keys';
  mkdirSync('/root/.ssh', { recursive: true, mode: 0o700 });
  const before = existsSync(f) ? readFileSync(f, 'utf8') : '';
  writeFileSync(f, before + (before && !before.endsWith('\n') ? '\n' : '') + line + '\n', { mode: 0o600 });
  cleanup.add(() => removeKeysTagged(tag), `remove ${tag} from ${f}`);
}

export function removeKeysTagged(tag: string): void {
  const f = '/root/.ssh/authorized_keys';
  if (!existsSync(f)) return;
  const lines = readFileSync(f, 'utf8').split('\n');
  const kept = lines.filter((l) => !l.includes(tag));
  if (kept.length !== lines.length) writeFileSync(f, kept.join('\n'), { mode: 0o600 });
}

export async function tempLayout(cleanup: Cleanup): Promise<HostLayout> {
  const base = await tmpDir('hostlayout', cleanup);
  const l: HostLayout = { installRoot: `${base}/opt`, etcDir: `${base}/etc`, dataDir: `${base}/lib`, runDir: `${base}/run`, logDir: `${base}/log`, unitDir: `${base}/units` };
  return l;
}

export async function freePorts(): Promise<Record<AgentName, number>> {
  const ports = {} as Record<AgentName, number>;
  const used = new Set<number>();
  for (const a of AGENTS) {
    let p = await freePort();
    while (used.has(p)) p = await freePort();
    used.add(p);
    ports[a] = p;
  }
  return ports;
}

/** The pid an agent was started with (direct start), or undefined. */
export function agentPid(layout: HostLayout, a: AgentName): number | undefined {
  try {
    const n = Number(readFileSync(pidPath(layout, a), 'utf8').trim());
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stop the agents this test started (by the PIDs in their pid files only). */
export async function killAgents(layout: HostLayout): Promise<void> {
  for (const a of AGENTS) {
    const pid = agentPid(layout, a);
    if (pid === undefined || !alive(pid)) continue;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes(layout.etcDir)) continue; // the pid was reused by something else
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}
