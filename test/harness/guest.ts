// The test guest image (scripts/guest-image) and what a test needs to talk to it: SSH keys,
// NoCloud cidata ISOs, serial-log waits and SSH commands.
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, copyFileSync, renameSync, rmSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../../shared/exec.js';
import { TStackError } from '../../shared/errors.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const GUEST_IMAGE_DIR = join(REPO_ROOT, 'scripts/guest-image');
export const GUEST_OUT = join(GUEST_IMAGE_DIR, 'out');

export interface GuestImage {
  qcow2: string;
  iso: string;
  kernel: string;
  initrd: string;
}

/**
 * Where libvirt gets its copy of the guest image. QEMU runs as libvirt-qemu and must traverse
 * every directory above a backing file: a clone under /root (0700) or a `mktemp -d` is not
 * traversable, so tests never hand libvirt scripts/guest-image/out itself.
 */
export const GUEST_COPY_ROOT = process.env.TSTACK_TEST_IMAGE_DIR ?? '/var/lib/tstack-test/guest-image';

let copied: Promise<GuestImage> | undefined;

/**
 * The built guest image, as a copy libvirt-qemu can read (under GUEST_COPY_ROOT, in a directory
 * named by the content hash, so clones with the same image share it); builds the image
 * (scripts/guest-image/build.sh) when missing or stale. `built` gives the paths in the clone.
 */
export async function guestImage(): Promise<GuestImage> {
  const built = await builtGuestImage();
  copied ??= Promise.resolve().then(() => readableCopy(built));
  return copied;
}

/** The build outputs in this clone (for serving over HTTP, comparing; not for libvirt). */
export async function builtGuestImage(): Promise<GuestImage> {
  const img: GuestImage = {
    qcow2: join(GUEST_OUT, 'tinyguest.qcow2'),
    iso: join(GUEST_OUT, 'tinyguest.iso'),
    kernel: join(GUEST_OUT, 'vmlinuz'),
    initrd: join(GUEST_OUT, 'initrd.img'),
  };
  // build.sh is a no-op (a few ms) when the outputs are newer than it
  await exec(join(GUEST_IMAGE_DIR, 'build.sh'), [], { timeoutMs: 600_000 });
  for (const p of Object.values(img)) if (!existsSync(p)) throw new Error(`guest image build did not produce ${p}`);
  return img;
}

function readableCopy(img: GuestImage): GuestImage {
  const h = createHash('sha256');
  for (const p of Object.values(img)) h.update(basename(p)).update(readFileSync(p));
  const dir = join(GUEST_COPY_ROOT, h.digest('hex').slice(0, 16));
  mkdirSync(GUEST_COPY_ROOT, { recursive: true, mode: 0o755 });
  // every level from / down must be traversable by libvirt-qemu
  for (let d = GUEST_COPY_ROOT; d !== '/'; d = resolve(d, '..')) {
    if ((statSync(d).mode & 0o001) === 0) throw new Error(`${d} is not traversable by other users: libvirt-qemu could not read the guest image under ${GUEST_COPY_ROOT} (set TSTACK_TEST_IMAGE_DIR)`);
  }
  if (!existsSync(dir)) {
    // concurrent runs (several clones) race here: each fills its own directory, one rename wins
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { mode: 0o755 });
    for (const p of Object.values(img)) {
      copyFileSync(p, join(tmp, basename(p)));
      chmodSync(join(tmp, basename(p)), 0o644);
    }
    chmodSync(tmp, 0o755);
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(dir)) throw new Error(`could not place the guest image copy at ${dir}`);
    }
  }
  const now = new Date();
  utimesSync(dir, now, now);
  pruneOldCopies(dir);
  const out = {} as GuestImage;
  for (const [k, p] of Object.entries(img) as Array<[keyof GuestImage, string]>) out[k] = join(dir, basename(p));
  return out;
}

/** Copies of other image versions unused for a week (a copy's mtime is touched on every use). */
function pruneOldCopies(keep: string): void {
  const weekAgo = Date.now() - 7 * 24 * 3600_000;
  for (const name of readdirSync(GUEST_COPY_ROOT)) {
    const p = join(GUEST_COPY_ROOT, name);
    if (p === keep || !/^[0-9a-f]{16}$/.test(name)) continue;
    try {
      if (statSync(p).mtimeMs < weekAgo) rmSync(p, { recursive: true, force: true });
    } catch {
      /* another run pruned it */
    }
  }
}

/** A fresh ed25519 key pair in dir (id_ed25519, 0600). */
export async function makeSshKey(dir: string, name = 'id_ed25519'): Promise<{ priv: string; pub: string; pubKey: string }> {
  mkdirSync(dir, { recursive: true });
  const priv = join(dir, name);
  await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `tstack-test-${name}`, '-f', priv], { timeoutMs: 30_000 });
  chmodSync(priv, 0o600);
  const pub = `${priv}.pub`;
  return { priv, pub, pubKey: readFileSync(pub, 'utf8').trim() };
}

export interface CidataOptions {
  /** meta-data: YAML text, or a flat mapping written as `key: value` lines. */
  metaData: string | Record<string, string>;
  /** user-data: '#cloud-config ...' or a '#!' script. */
  userData: string;
  /** network-config (written to the ISO; the test guest itself ignores it: DHCP on eth0). */
  networkConfig?: string;
  /** File name of the ISO in dir (default cidata.iso). */
  name?: string;
}

/** A NoCloud config drive (ISO 9660 + Joliet + Rock Ridge, volume id 'cidata'); returns its path. */
export async function makeCidataIso(dir: string, o: CidataOptions): Promise<string> {
  const name = o.name ?? 'cidata.iso';
  const src = join(dir, `${name}.d`);
  mkdirSync(src, { recursive: true });
  const md = typeof o.metaData === 'string' ? o.metaData : Object.entries(o.metaData).map(([k, v]) => `${k}: ${v}`).join('\n') + '\n';
  writeFileSync(join(src, 'meta-data'), md);
  writeFileSync(join(src, 'user-data'), o.userData);
  const files = ['user-data', 'meta-data'];
  if (o.networkConfig !== undefined) {
    writeFileSync(join(src, 'network-config'), o.networkConfig);
    files.push('network-config');
  }
  const iso = join(dir, name);
  await exec('genisoimage', ['-quiet', '-output', iso, '-volid', 'cidata', '-joliet', '-rock', ...files], { cwd: src, timeoutMs: 60_000 });
  chmodSync(iso, 0o644);
  return iso;
}

/** Wait until a line of the (growing) serial log matches pattern; returns that line. */
export async function waitForSerial(logPath: string, pattern: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text: string;
    try {
      text = readFileSync(logPath, 'utf8');
    } catch {
      text = '';
    }
    // complete lines only: the serial console writes a line in pieces, and a match on the first
    // piece returned a line cut short ('TINYGUEST-READY hostname=… dataso')
    const line = text.slice(0, text.lastIndexOf('\n') + 1).split(/\r?\n/).find((l) => pattern.test(l));
    if (line !== undefined) return line.replace(/\r$/, '');
    if (Date.now() > deadline) {
      const tail = text.split(/\r?\n/).slice(-15).join('\n');
      throw new TStackError('TIMEOUT', `no line matching ${pattern} in ${logPath} within ${timeoutMs} ms; last lines:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface SshRunOptions {
  host: string;
  port?: number;
  user?: string;
  /** Private key file. */
  key: string;
  cmd: string;
  /** Run the ssh client inside this network namespace. */
  netns?: string;
  /** Overall time to keep retrying connection failures (default 60 s). */
  timeoutMs?: number;
  stdin?: string;
}

/**
 * Run a command over SSH (OpenSSH client via shared/exec; BatchMode, no host-key checks). Retries
 * while ssh itself fails (exit 255: not up yet, key not installed yet) until timeoutMs; a failing
 * remote command throws at once with its stderr. Returns stdout.
 */
export async function sshRun(o: SshRunOptions): Promise<string> {
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const args = [
    '-i', o.key,
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'ConnectTimeout=5',
    '-o', 'ServerAliveInterval=5',
    '-o', 'ServerAliveCountMax=2',
    '-o', 'LogLevel=ERROR',
    '-p', String(o.port ?? 22),
    `${o.user ?? 'root'}@${o.host}`,
    o.cmd,
  ];
  let last: string;
  for (;;) {
    const left = deadline - Date.now();
    try {
      const opts: Parameters<typeof exec>[2] = { timeoutMs: Math.max(5_000, Math.min(left, 60_000)) };
      if (o.netns) opts.netns = o.netns;
      if (o.stdin !== undefined) opts.stdin = o.stdin;
      return (await exec('ssh', args, opts)).stdout;
    } catch (e) {
      const err = e as TStackError;
      const rc = err.details?.exitCode;
      last = `${err.message}`;
      if (rc !== 255 && err.code !== 'TIMEOUT') throw e;
    }
    if (Date.now() + 250 > deadline) throw new TStackError('TIMEOUT', `ssh ${o.host}:${o.port ?? 22} did not succeed in time: ${last}`);
    // short: a booting guest refuses at once until dropbear listens, and every e2e boot waits here
    await new Promise((r) => setTimeout(r, 250));
  }
}
