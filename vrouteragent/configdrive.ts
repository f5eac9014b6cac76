// NoCloud config drive: a "cidata" ISO 9660 (Joliet + Rock Ridge) with user-data, meta-data
// and network-config, written atomically to the requested path.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { TStackError } from '../shared/errors.js';
import { exec } from '../shared/exec.js';
import { renderMetaData, renderNetworkConfig, renderUserData, type ConfigDriveSpec } from './render/configdrive.js';

const which = (p: string): boolean => ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/local/bin'].some((d) => existsSync(`${d}/${p}`));

export async function buildConfigDrive(path: string, spec: ConfigDriveSpec, signal?: AbortSignal): Promise<{ path: string; sizeBytes: number; sha256: string }> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const stage = mkdtempSync(join(dir, `.${basename(path)}.stage-`));
  const tmpIso = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    writeFileSync(join(stage, 'meta-data'), renderMetaData(spec));
    writeFileSync(join(stage, 'user-data'), renderUserData(spec));
    writeFileSync(join(stage, 'network-config'), renderNetworkConfig(spec));
    const names = ['user-data', 'meta-data', 'network-config'];
    if (spec.vendorData !== undefined) {
      writeFileSync(join(stage, 'vendor-data'), spec.vendorData);
      names.push('vendor-data');
    }
    const files = names.map((f) => join(stage, f));
    if (which('genisoimage')) {
      await exec('genisoimage', ['-quiet', '-output', tmpIso, '-volid', 'cidata', '-joliet', '-rock', ...files], { signal, errorCode: 'STORAGE_ERROR' });
    } else if (which('xorriso')) {
      await exec('xorriso', ['-as', 'mkisofs', '-quiet', '-o', tmpIso, '-V', 'cidata', '-J', '-r', ...files], { signal, errorCode: 'STORAGE_ERROR' });
    } else {
      throw new TStackError('STORAGE_ERROR', 'neither genisoimage nor xorriso is installed (scripts/setup installs them)');
    }
    renameSync(tmpIso, path);
    const data = readFileSync(path);
    return { path, sizeBytes: statSync(path).size, sha256: createHash('sha256').update(data).digest('hex') };
  } finally {
    rmSync(stage, { recursive: true, force: true });
    rmSync(tmpIso, { force: true });
  }
}
