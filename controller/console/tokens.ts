// Console access tokens: single-use, short-lived, bound to one VM and the account that asked.
// Kept as store docs keyed by the token's SHA-256 (a shared Redis inventory lets any controller
// of the cloud serve the WebSocket; the inventory never holds a usable token).
import { createHash, randomBytes } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore } from '../store/types.js';

const DOCS = 'console-tokens';
export const CONSOLE_TOKEN_TTL_MS = 60_000;

export interface ConsoleTicket {
  vmUuid: string;
  accountUuid: string;
  /** The host the VM ran on when the token was issued (the VNC port belongs to it). */
  hostUuid: string;
  vncHost: string;
  vncPort: number;
  expiresAt: string;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
/** What a token looks like (base64url of 32 bytes): anything else is refused before the store. */
export const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

export async function issueConsoleToken(store: InventoryStore, t: Omit<ConsoleTicket, 'expiresAt'>, ttlMs = CONSOLE_TOKEN_TTL_MS): Promise<{ token: string; expiresAt: string }> {
  // tokens never used would stay forever: each issue sweeps the expired ones (few exist at a time)
  const now = Date.now();
  for (const { id, doc } of await store.listDocs<ConsoleTicket>(DOCS)) if (!(Date.parse(doc.expiresAt) > now)) await store.deleteDoc(DOCS, id);
  const token = randomBytes(32).toString('base64url');
  const expiresAt = new Date(Date.now() + ttlMs).toISOString();
  await store.putDoc(DOCS, sha256(token), { ...t, expiresAt } satisfies ConsoleTicket);
  return { token, expiresAt };
}

/** Tokens being claimed by this process: two connections racing with one token get one winner. */
const claiming = new Set<string>();

/**
 * Take a token (it is gone afterwards, whatever follows). UNAUTHORIZED when unknown, used or
 * expired; FORBIDDEN when another account asked for it.
 */
export async function claimConsoleToken(store: InventoryStore, token: string, accountUuid: string): Promise<ConsoleTicket> {
  if (!TOKEN_RE.test(token)) throw new TStackError('UNAUTHORIZED', 'console token: malformed');
  const id = sha256(token);
  if (claiming.has(id)) throw new TStackError('UNAUTHORIZED', 'console token: already used');
  claiming.add(id);
  try {
    const t = await store.getDoc<ConsoleTicket>(DOCS, id);
    if (!t) throw new TStackError('UNAUTHORIZED', 'console token: unknown or already used; request console access again');
    await store.deleteDoc(DOCS, id);
    if (Date.parse(t.expiresAt) <= Date.now()) throw new TStackError('UNAUTHORIZED', 'console token: expired; request console access again');
    if (t.accountUuid !== accountUuid) throw new TStackError('FORBIDDEN', 'console token: issued to another account');
    return t;
  } finally {
    claiming.delete(id);
  }
}

/** VNC uses the first 8 characters of a password (its DES key). */
export const vncPassword = (consolePassword: unknown): string | undefined => (typeof consolePassword === 'string' && consolePassword ? consolePassword.slice(0, 8) : undefined);
