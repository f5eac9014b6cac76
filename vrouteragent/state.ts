// Agent state on disk: one directory per flat L3 under <data-dir>/vrouter/flat/<l3 uuid>/,
// holding the last applied request data (JSON) and the files rendered from it. A restarted
// agent rebuilds everything from these files.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function flatRoot(dataDir: string): string {
  return join(dataDir, 'vrouter', 'flat');
}

/** Write atomically (tmp + rename); returns false when the content was already there. */
export function writeIfChanged(file: string, content: string, mode = 0o644): boolean {
  try {
    if (readFileSync(file, 'utf8') === content) return false;
  } catch {
    /* absent */
  }
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, file);
  return true;
}

export function readJson<T>(file: string, dflt: T): T {
  if (!existsSync(file)) return dflt;
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

export const writeJson = (file: string, v: unknown, mode = 0o600): boolean => writeIfChanged(file, JSON.stringify(v, null, 1) + '\n', mode);

export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

export function listDirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
}

export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true });
