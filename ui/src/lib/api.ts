// The REST client of the web console: the session token lives in sessionStorage (one tab, gone
// with the tab); any 401 ends the session and the app shows the login page with the reason.
import type { Resource } from './types';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export interface Session {
  token: string;
  expiresAt: string;
  accountUuid: string;
  accountName: string;
}

const KEY = 'tstack.session';
let session: Session | undefined = (() => {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) ?? 'null') as Session | null;
    return s && Date.parse(s.expiresAt) > Date.now() ? s : undefined;
  } catch {
    return undefined;
  }
})();
const listeners = new Set<(s: Session | undefined, reason?: string) => void>();

export const currentSession = (): Session | undefined => session;
export function onSession(fn: (s: Session | undefined, reason?: string) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
function setSession(s: Session | undefined, reason?: string): void {
  session = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  for (const l of listeners) l(s, reason);
}

/** The session ended on the server's side (expired, logged out elsewhere). */
export const expireSession = (reason: string): void => {
  if (session) setSession(undefined, reason);
};

export async function request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (session) headers.authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  if (!res.ok) {
    const b = (parsed ?? {}) as { code?: string; message?: string; field?: string; details?: Record<string, unknown> };
    const err = new ApiError(res.status, b.code ?? `HTTP_${res.status}`, b.message ?? `${method} ${path}: HTTP ${res.status}`, b.field, b.details);
    if (res.status === 401 && path !== '/v1/sessions') expireSession('Your session has expired or was ended; log in again.');
    throw err;
  }
  return parsed as T;
}

export const get = <T = unknown>(p: string): Promise<T> => request<T>('GET', p);
export const post = <T = unknown>(p: string, b: unknown = {}): Promise<T> => request<T>('POST', p, b);
export const put = <T = unknown>(p: string, b: unknown): Promise<T> => request<T>('PUT', p, b);
export const del = <T = unknown>(p: string): Promise<T> => request<T>('DELETE', p);

export async function login(accountName: string, password: string): Promise<Session> {
  const r = await request<{ token: string; expiresAt: string; accountUuid: string }>('POST', '/v1/sessions', { accountName, password });
  const s: Session = { ...r, accountName };
  setSession(s);
  return s;
}

export async function logout(): Promise<void> {
  try {
    if (session) await request('DELETE', '/v1/sessions/current');
  } finally {
    setSession(undefined, 'You have logged out.');
  }
}

export interface List<T = Resource> {
  inventories: T[];
  total: number;
}

/** A long operation answers 202 {jobUuid}; a short one the resource. */
export const isJob = (r: unknown): r is { jobUuid: string; location: string } => typeof r === 'object' && r !== null && typeof (r as { jobUuid?: unknown }).jobUuid === 'string';
