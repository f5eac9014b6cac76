// The agent package a controller deploys to hosts: its own built tree (dist/, package.json,
// package-lock.json, scripts/setup, scripts/systemd/) as a tar.gz, built once per version (and
// build stamp) into a cache directory and reused for every host. With `bundleNodeModules` the
// production dependencies (npm ls --omit=dev) ride along, so a host needs neither the npm
// registry nor a compiler; without it the host runs `npm ci --omit=dev`.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../../shared/exec.js';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { AGENTS, checkVersion } from './render.js';

const log = logger('host-package');

export interface PackageSource {
  /** Root of a built tstack tree (has dist/, package.json). */
  root: string;
  /** Include production node_modules (default false: the host runs npm ci --omit=dev). */
  bundleNodeModules?: boolean;
}

export interface BuiltPackage {
  path: string;
  version: string;
  sha256: string;
  size: number;
  bundled: boolean;
  /** The tree it was built from (to recognise "same machine, same path"). */
  root: string;
}

/** The root of the running controller's tree (…/dist/controller/host → …; source: controller/host → …). */
let own: string | undefined;

export function ownRoot(): string {
  if (own) return own;
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(d, 'package.json'))) return (own = d);
    d = dirname(d);
  }
  throw new TStackError('INTERNAL', 'cannot find the tstack root (package.json) above controller/host');
}

/**
 * Versions read, by root, once per process: the tracker asks for every host each round (issue
 * 19: it stat'ed package.json per host). The version the controller speaks is that of the package it deploys,
 * which is built once per runtime (service.ts packageOf): a package.json edited under a
 * running controller is not deployed, so re-reading it (as an mtime check did) only made the
 * tracker see every host as stale and re-deploy the old package. A package build reads it
 * afresh (`fresh`), so what is deployed and what the agents are checked against stay the same.
 */
const versions = new Map<string, string>();

export function readVersion(root: string, o: { fresh?: boolean } = {}): string {
  // the build's root is resolved, the tracker's as configured: one entry for both
  const key = resolve(root);
  const hit = versions.get(key);
  if (hit !== undefined && !o.fresh) return hit;
  const v = (JSON.parse(readFileSync(join(key, 'package.json'), 'utf8')) as { version?: string }).version;
  const version = checkVersion(v ?? '');
  versions.set(key, version);
  return version;
}

function stamp(root: string, bundled: boolean): string {
  const h = createHash('sha256').update(bundled ? 'bundle' : 'npm');
  for (const f of ['package.json', 'package-lock.json', ...AGENTS.map((a) => `dist/${a}/main.js`)]) {
    const p = join(root, f);
    h.update(f).update(existsSync(p) ? String(statSync(p).mtimeMs) : '-');
  }
  return h.digest('hex').slice(0, 12);
}

async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Top-level production dependency directories, relative to root (nested ones come with their parent). */
async function prodModules(root: string): Promise<string[]> {
  const r = await exec('npm', ['ls', '--omit=dev', '--parseable', '--all'], { cwd: root, timeoutMs: 120_000, okCodes: [0, 1] });
  // node_modules may be a link (a test fixture): paths are taken relative to its real location
  const nm = realpathSync(join(root, 'node_modules'));
  const abs = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => (existsSync(l) ? realpathSync(l) : l));
  const rel = [...new Set(abs.map((p) => relative(nm, p)))]
    .filter((p) => p !== '' && !p.startsWith('..') && !p.startsWith('/') && !p.split('/').includes('..'))
    .map((p) => `node_modules/${p}`)
    .sort();
  const out: string[] = [];
  for (const p of rel) if (!out.some((o) => p.startsWith(o + '/'))) out.push(p);
  if (out.length === 0) throw new TStackError('HOST_PACKAGE_FAILED', `npm ls found no production modules under ${root}/node_modules`);
  return out;
}

const inflight = new Map<string, Promise<BuiltPackage>>();

/** Build (or reuse) the package of the tree at src.root into cacheDir. */
export function buildPackage(src: PackageSource, cacheDir: string): Promise<BuiltPackage> {
  const root = resolve(src.root);
  const bundled = src.bundleNodeModules === true;
  const version = readVersion(root, { fresh: true });
  const key = `${version}-${bundled ? 'bundle' : 'npm'}-${stamp(root, bundled)}`;
  const file = join(cacheDir, `tstack-${key}.tar.gz`);
  let p = inflight.get(file);
  if (!p) {
    p = build(root, version, bundled, file).finally(() => inflight.delete(file));
    inflight.set(file, p);
  }
  return p;
}

async function build(root: string, version: string, bundled: boolean, file: string): Promise<BuiltPackage> {
  for (const a of AGENTS) {
    if (!existsSync(join(root, 'dist', a, 'main.js'))) {
      throw new TStackError('HOST_PACKAGE_FAILED', `${root}/dist/${a}/main.js is missing: build tstack first (npm run build)`, { root });
    }
  }
  if (existsSync(file) && existsSync(file + '.sha256')) {
    return { path: file, version, sha256: readFileSync(file + '.sha256', 'utf8').trim(), size: statSync(file).size, bundled, root };
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const entries = ['dist', 'package.json'];
  for (const f of ['package-lock.json', 'scripts/setup', 'scripts/systemd']) if (existsSync(join(root, f))) entries.push(f);
  if (bundled) entries.push(...(await prodModules(root)));
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  const started = Date.now();
  try {
    // -h: a test fixture may link node_modules in; never store absolute paths or owners
    await exec('tar', ['-czhf', tmp, '--owner=0', '--group=0', '--exclude=*.map', '--exclude=node_modules/.cache', '-C', root, '--', ...entries], { timeoutMs: 15 * 60_000 });
    const sha256 = await sha256File(tmp);
    renameSync(tmp, file);
    writeFileSync(file + '.sha256', sha256 + '\n');
    const size = statSync(file).size;
    log.info({ file, version, bundled, size, ms: Date.now() - started }, 'built agent package');
    return { path: file, version, sha256, size, bundled, root };
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e instanceof TStackError ? e : new TStackError('HOST_PACKAGE_FAILED', `building the agent package failed: ${(e as Error).message}`);
  }
}
