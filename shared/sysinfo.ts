// Small host facts every daemon needs.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

let cachedBootId: string | undefined;
/** The kernel's boot id: it changes when the host reboots. */
export function bootId(): string {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      cachedBootId = randomUUID();
    }
  }
  return cachedBootId;
}

let cachedVersion: string | undefined;
/** tstack's version, from package.json. */
export function tstackVersion(): string {
  if (cachedVersion === undefined) {
    for (const rel of ['../package.json', '../../package.json']) {
      try {
        cachedVersion = (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
        break;
      } catch {
        /* try the next location (source tree vs dist/) */
      }
    }
    cachedVersion ??= '0.0.0';
  }
  return cachedVersion;
}
