// Where the CLI keeps its sessions: $XDG_CONFIG_HOME/tstack/session.json (default
// ~/.config/tstack/session.json), mode 0600, one session per controller URL plus the
// current URL. TSTACK_URL and TSTACK_TOKEN override it (scripts, CI).
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export interface SavedSession {
  token: string;
  expiresAt: string;
  accountName: string;
}

interface SessionFile {
  current?: string;
  sessions: Record<string, SavedSession>;
}

export function sessionFilePath(): string {
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'tstack', 'session.json');
}

function read(): SessionFile {
  const p = sessionFilePath();
  if (!existsSync(p)) return { sessions: {} };
  try {
    const v = JSON.parse(readFileSync(p, 'utf8')) as SessionFile;
    return { ...v, sessions: v.sessions ?? {} };
  } catch {
    return { sessions: {} };
  }
}

function write(f: SessionFile): void {
  const p = sessionFilePath();
  mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(f, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, p);
}

export const normUrl = (u: string): string => u.replace(/\/+$/, '');

/** --url, else TSTACK_URL, else the URL of the last login, else the default. */
export function resolveUrl(flag?: string): string {
  return normUrl(flag || process.env.TSTACK_URL || read().current || DEFAULT_URL);
}

export function loadSession(url: string): SavedSession | undefined {
  if (process.env.TSTACK_TOKEN) return { token: process.env.TSTACK_TOKEN, expiresAt: '', accountName: '' };
  return read().sessions[normUrl(url)];
}

export function saveSession(url: string, s: SavedSession): void {
  const f = read();
  f.sessions[normUrl(url)] = s;
  f.current = normUrl(url);
  write(f);
}

export function dropSession(url: string): void {
  const f = read();
  delete f.sessions[normUrl(url)];
  write(f);
}
