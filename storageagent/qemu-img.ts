// Typed wrappers around qemu-img (and qemu-io's no-op-free subset we need). Targets are local
// paths, nfs:// URLs or rbd: strings; the caller builds them. All calls go through exec().
import { exec } from '../shared/exec.js';
import { TStackError } from '../shared/errors.js';

export interface ImgInfo {
  format: string;
  virtualSize: number;
  actualSize: number;
  /** backing file name as recorded in the image (may be relative to the image) */
  backingFile?: string;
  backingFormat?: string;
  fullBackingFile?: string;
  dirty: boolean;
  /** qcow2 with an external data file */
  dataFile?: string;
  encrypted: boolean;
  corrupt: boolean;
}

interface RawInfo {
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'full-backing-filename'?: string;
  'dirty-flag'?: boolean;
  encrypted?: boolean;
  'format-specific'?: { type: string; data?: { 'data-file'?: string; corrupt?: boolean } };
}

const QI = 'qemu-img';
export interface Opts {
  signal?: AbortSignal;
  timeoutMs?: number;
  cwd?: string;
}
const base = (o: Opts, timeoutMs: number) => ({
  ...(o.signal ? { signal: o.signal } : {}),
  ...(o.cwd ? { cwd: o.cwd } : {}),
  timeoutMs: o.timeoutMs ?? timeoutMs,
  errorCode: 'STORAGE_ERROR',
});

function parse(r: RawInfo): ImgInfo {
  const i: ImgInfo = {
    format: r.format,
    virtualSize: r['virtual-size'],
    actualSize: r['actual-size'] ?? 0,
    dirty: r['dirty-flag'] === true,
    encrypted: r.encrypted === true,
    corrupt: r['format-specific']?.data?.corrupt === true,
  };
  if (r['backing-filename'] !== undefined) i.backingFile = r['backing-filename'];
  if (r['backing-filename-format'] !== undefined) i.backingFormat = r['backing-filename-format'];
  if (r['full-backing-filename'] !== undefined) i.fullBackingFile = r['full-backing-filename'];
  const df = r['format-specific']?.data?.['data-file'];
  if (df !== undefined) i.dataFile = df;
  return i;
}

/** qemu-img info; `format` pins the driver (never probe a file that may be untrusted raw). */
export async function info(target: string, o: Opts & { format?: string } = {}): Promise<ImgInfo> {
  const args = ['info', '--output=json', '-U'];
  if (o.format) args.push('-f', o.format);
  args.push(target);
  const r = await exec(QI, args, base(o, 120_000));
  return parse(JSON.parse(r.stdout) as RawInfo);
}

/** qemu-img info --backing-chain: the image first, then each backing layer. */
export async function chain(target: string, o: Opts & { format?: string } = {}): Promise<ImgInfo[]> {
  const args = ['info', '--output=json', '-U', '--backing-chain'];
  if (o.format) args.push('-f', o.format);
  args.push(target);
  const r = await exec(QI, args, base(o, 120_000));
  return (JSON.parse(r.stdout) as RawInfo[]).map(parse);
}

export async function create(
  target: string,
  fmt: 'qcow2' | 'raw',
  o: Opts & { size?: number; backing?: string; backingFormat?: string; unsafe?: boolean } = {},
): Promise<void> {
  const args = ['create', '-q', '-f', fmt];
  if (o.unsafe) args.push('-u'); // don't open the backing file (it may not exist yet)
  if (fmt === 'qcow2') args.push('-o', 'lazy_refcounts=off');
  if (o.backing !== undefined) {
    if (!o.backingFormat) throw new TStackError('INTERNAL', 'qemu-img create: backing format required');
    args.push('-b', o.backing, '-F', o.backingFormat);
  }
  args.push(target);
  if (o.size !== undefined) args.push(String(o.size));
  await exec(QI, args, base(o, 120_000));
}

export async function convert(
  src: string,
  dst: string,
  o: Opts & { srcFormat: string; dstFormat: string; noCreate?: boolean; compress?: boolean; /** -U: read although a QEMU holds the source's lock */ forceShare?: boolean },
): Promise<void> {
  const args = ['convert', '-q', '-f', o.srcFormat, '-O', o.dstFormat];
  if (o.forceShare) args.push('-U');
  if (o.noCreate) args.push('-n');
  if (o.compress) args.push('-c');
  args.push(src, dst);
  await exec(QI, args, base(o, 6 * 3600_000));
}

/** Merge `top` into its backing file. */
export async function commit(top: string, o: Opts & { format?: string } = {}): Promise<void> {
  const args = ['commit', '-q'];
  if (o.format) args.push('-f', o.format);
  args.push(top);
  await exec(QI, args, base(o, 6 * 3600_000));
}

/**
 * Change the backing file of `target`. Safe mode (default) copies into `target` whatever
 * differs between the old and the new backing chain; `newBacking` undefined means "none"
 * (the image becomes standalone). Relative names are relative to `target`'s directory.
 */
export async function rebase(
  target: string,
  newBacking: string | undefined,
  o: Opts & { backingFormat?: string; unsafe?: boolean } = {},
): Promise<void> {
  const args = ['rebase', '-q', '-f', 'qcow2'];
  if (o.unsafe) args.push('-u');
  if (newBacking === undefined) args.push('-b', '');
  else args.push('-F', o.backingFormat ?? 'qcow2', '-b', newBacking);
  args.push(target);
  await exec(QI, args, base(o, 6 * 3600_000));
}

export async function resize(target: string, size: number, o: Opts & { format: string }): Promise<void> {
  await exec(QI, ['resize', '-q', '-f', o.format, target, String(size)], base(o, 600_000));
}

/** qemu-img check of a qcow2: throws a STORAGE_ERROR describing corruption. */
export async function check(target: string, o: Opts & { format: string }): Promise<void> {
  const r = await exec(QI, ['check', '--output=json', '-f', o.format, target], { ...base(o, 600_000), okCodes: [0, 1, 2, 3] });
  let j: { corruptions?: number; 'check-errors'?: number } = {};
  try {
    j = JSON.parse(r.stdout) as typeof j;
  } catch {
    /* fall through on rc */
  }
  if (r.code === 1 || r.code === 2 || (j.corruptions ?? 0) > 0 || (j['check-errors'] ?? 0) > 0) {
    throw new TStackError('STORAGE_ERROR', `image is corrupt (qemu-img check: ${j.corruptions ?? '?'} corruptions, ${j['check-errors'] ?? '?'} check errors)`, {
      stderr: r.stderr.slice(-2000),
      exitCode: r.code,
    });
  }
}

/** True when the guest-visible content of a and b is identical. */
export async function compare(a: string, b: string, o: Opts & { fa?: string; fb?: string } = {}): Promise<boolean> {
  const args = ['compare', '-q'];
  if (o.fa) args.push('-f', o.fa);
  if (o.fb) args.push('-F', o.fb);
  args.push(a, b);
  const r = await exec(QI, args, { ...base(o, 600_000), okCodes: [0, 1] });
  return r.code === 0;
}
