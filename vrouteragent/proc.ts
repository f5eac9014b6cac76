// What the agent knows of the daemons it started (dnsmasq, haproxy, charon): they outlive it, so it
// finds them again through /proc, never by a pid it remembers.
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A NUL-separated /proc file of a process (argv or environment); undefined when it is gone. */
export function readProc(pid: number, what: 'cmdline' | 'environ'): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/${what}`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

export const cmdlineOf = (pid: number): string[] | undefined => readProc(pid, 'cmdline');

/** Same network namespace as /run/netns/<ns>? (compare inode numbers) */
export function inNamespace(pid: number, ns: string): boolean {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`) === `net:[${statSync(`/run/netns/${ns}`).ino}]`;
  } catch {
    return false;
  }
}

/** SIGTERM, up to waitMs for it to go (a zombie, with an empty argv, counts as gone), then SIGKILL. */
export async function stopPid(pid: number, waitMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let t = 0; t < waitMs && existsSync(`/proc/${pid}`) && cmdlineOf(pid)?.length; t += 20) await sleep(20);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}
