// Accounts and sessions. An account is a resource of kind 'account' (type SystemAdmin or
// Normal) whose scrypt hash rides in the internal field `_passwordHash` (fields starting
// with '_' never leave the API). Sessions are store docs keyed by the SHA-256 of the token,
// so the inventory never holds a usable token.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { Obj, Type } from '../../shared/protocol/schema.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { generatePassword, hashPassword, verifyPassword } from './passwords.js';
import { ACCOUNT_KIND, type AccountType } from '../model/account.js';
import { HMAC_SKEW_MS, NONCE_CLAIMS, parseSignedAuthorization, signature, signaturesEqual, stringToSign } from './hmac.js';

const log = logger('auth');

export const SESSION_DOCS = 'sessions';
const NAME_CLAIMS = 'account-names';
/** Users of an account (controller/identity/users.ts). */
export const USER_KIND = 'user';

// the collection's one definition (schemas, kind) lives in the model; re-exported for callers
export { ACCOUNT_KIND, AccountCreate, AccountUpdate, AccountView, type AccountType } from '../model/account.js';

export interface Account extends Resource {
  type: AccountType;
  _passwordHash: string;
}

/** Who is calling. */
export interface Principal {
  accountUuid: string;
  accountName: string;
  isAdmin: boolean;
  sessionId: string;
  /** Set when a user of the account logged in (controller/identity): policies decide what it may do. */
  userUuid?: string;
  userName?: string;
}

interface SessionDoc {
  accountUuid: string;
  userUuid?: string;
  createDate: string;
  expiresAt: string;
  /** Last use (written at most once a minute); idle longer than sessionIdleMs ends the session. */
  lastUsed?: string;
}

/** Access keys (controller/identity/access-keys.ts): `Authorization: Bearer ak:<accessKeyId>:<secret>`. */
export const ACCESS_KEY_KIND = 'access-key';

export const SessionCreate = Obj({
  accountName: Type.String({ minLength: 1, maxLength: 64 }),
  userName: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'log in as this user of the account (its own password)' })),
  password: Type.String({ minLength: 1, maxLength: 256 }),
});

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

// the session id (sha256) of tokens that named a session: every API request hashed its token
// again (issue 19: a few % of a read's CPU); bounded, and only tokens that found a session
const sessionIds = new Map<string, string>();
const sessionIdOf = (token: string): string => sessionIds.get(token) ?? sha256(token);
const rememberSessionId = (token: string, id: string): void => {
  if (sessionIds.size >= 10_000) sessionIds.clear();
  sessionIds.set(token, id);
};

/**
 * Principals of sessions recently checked, per store (every AuthService on one inventory shares
 * it: modules make their own instances to revoke sessions). On Redis the session doc is still
 * read on every request (a logout through another controller counts at once); the account (and
 * user) reads behind it are skipped for PRINCIPAL_CACHE_MS: one of a list's three Redis round
 * trips (issue 19). On SQLite (one controller) the session doc is not read either while fresh. That is safe because whatever ends an account's or user's access (disable,
 * delete, password change) also deletes its sessions; an entry also goes when its session
 * ends here.
 */
export const PRINCIPAL_CACHE_MS = 1_000;
interface CachedSession {
  p: Principal;
  s: SessionDoc;
  until: number;
}
const principalCaches = new WeakMap<object, Map<string, CachedSession>>();
const cacheOf = (store: object): Map<string, CachedSession> => {
  let m = principalCaches.get(store);
  if (!m) principalCaches.set(store, (m = new Map()));
  return m;
};

export interface AuthOptions {
  /** Session lifetime (default 12 h). */
  sessionTtlMs?: number;
  /** A session unused this long ends (default 7200 s, the manual's idle timeout). */
  sessionIdleMs?: number;
}

export class AuthService {
  readonly sessionTtlMs: number;
  readonly sessionIdleMs: number;
  private adminUuid?: string;
  /** Signed requests in progress: a per-request token (`hm:…`) → its principal (verifySigned/endSigned). */
  private readonly signed = new Map<string, Principal>();
  private nonceGcAt = 0;

  constructor(
    private readonly store: InventoryStore,
    o: AuthOptions = {},
  ) {
    this.sessionTtlMs = o.sessionTtlMs ?? 12 * 3600_000;
    this.sessionIdleMs = o.sessionIdleMs ?? 7200_000;
  }

  get adminAccountUuid(): string {
    if (!this.adminUuid) throw new Error('admin account not bootstrapped');
    return this.adminUuid;
  }

  async findByName(name: string): Promise<Account | undefined> {
    const r = await this.store.list<Account>({ kind: ACCOUNT_KIND, filters: [{ field: 'name', op: '=', value: name }], limit: 1 });
    return r.items[0];
  }

  /**
   * Create account `admin` at first start. Password: `password` if given (also re-applied at
   * later starts, so an operator can reset it), else a generated one written to
   * <dataDir>/admin-password (0600) and returned so the caller prints it once.
   */
  async bootstrapAdmin(o: { dataDir: string; password?: string }): Promise<{ created: boolean; generatedPassword?: string }> {
    const existing = await this.findByName('admin');
    if (existing) {
      if (existing.type !== 'SystemAdmin') throw new Error(`account 'admin' (${existing.uuid}) is not a SystemAdmin`);
      this.adminUuid = existing.uuid;
      if (o.password !== undefined && !(await verifyPassword(o.password, existing._passwordHash))) {
        await this.store.update(existing.uuid, { _passwordHash: await hashPassword(o.password) });
        await this.revokeSessions(existing.uuid);
        log.warn('admin password reset from TSTACK_ADMIN_PASSWORD / --admin-password-file');
      }
      return { created: false };
    }
    let password = o.password;
    let generatedPassword: string | undefined;
    if (password === undefined) {
      const file = join(o.dataDir, 'admin-password');
      // a previous start may have died between writing the file and creating the account
      password = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
      if (!password) {
        password = generatePassword();
        writeFileSync(file, password + '\n', { mode: 0o600 });
        chmodSync(file, 0o600);
      }
      generatedPassword = password;
    }
    const uuid = randomUUID();
    if (!(await this.store.claim(NAME_CLAIMS, 'admin', uuid))) {
      // claimed by a run that died before creating the account: take it over
      await this.store.release(NAME_CLAIMS, 'admin');
      await this.store.claim(NAME_CLAIMS, 'admin', uuid);
    }
    await this.store.create<Account>({
      uuid,
      kind: ACCOUNT_KIND,
      name: 'admin',
      description: 'system administrator (created at first start)',
      type: 'SystemAdmin',
      state: 'Enabled',
      ownerAccountUuid: uuid,
      tags: [],
      createDate: new Date().toISOString(),
      lastOpDate: new Date().toISOString(),
      _passwordHash: await hashPassword(password),
    });
    this.adminUuid = uuid;
    log.info({ uuid }, 'created account admin');
    return generatedPassword !== undefined ? { created: true, generatedPassword } : { created: true };
  }

  async createAccount(body: { name: string; password: string; description?: string }): Promise<Account> {
    const uuid = randomUUID();
    if (!(await this.store.claim(NAME_CLAIMS, body.name, uuid))) {
      throw new TStackError('CONFLICT', `an account named '${body.name}' already exists`, { field: 'name' });
    }
    try {
      const now = new Date().toISOString();
      const a: Account = { uuid, kind: ACCOUNT_KIND, name: body.name, type: 'Normal', state: 'Enabled', ownerAccountUuid: uuid, tags: [], createDate: now, lastOpDate: now, _passwordHash: await hashPassword(body.password) };
      if (body.description !== undefined) a.description = body.description;
      return await this.store.create<Account>(a);
    } catch (e) {
      await this.store.release(NAME_CLAIMS, body.name, uuid);
      throw e;
    }
  }

  async updateAccount(caller: Principal, uuid: string, body: { name?: string; description?: string; password?: string; oldPassword?: string }): Promise<Account> {
    const a = await this.store.get<Account>(uuid);
    if (!a || a.kind !== ACCOUNT_KIND || (!caller.isAdmin && a.uuid !== caller.accountUuid)) throw new TStackError('NOT_FOUND', `account ${uuid} not found`);
    const patch: Partial<Account> = {};
    if (body.description !== undefined) patch.description = body.description;
    if (body.name !== undefined && body.name !== a.name) {
      if (a.type === 'SystemAdmin') throw new TStackError('INVALID_ARGUMENT', "the admin account cannot be renamed", { field: 'name' });
      if (!(await this.store.claim(NAME_CLAIMS, body.name, a.uuid))) throw new TStackError('CONFLICT', `an account named '${body.name}' already exists`, { field: 'name' });
      patch.name = body.name;
    }
    if (body.password !== undefined) {
      if (a.uuid === caller.accountUuid) {
        if (body.oldPassword === undefined) throw new TStackError('INVALID_ARGUMENT', 'oldPassword: required to change your own password', { field: 'oldPassword' });
        if (!(await verifyPassword(body.oldPassword, a._passwordHash))) throw new TStackError('INVALID_ARGUMENT', 'oldPassword: does not match the current password', { field: 'oldPassword' });
      }
      patch._passwordHash = await hashPassword(body.password);
    }
    const out = await this.store.update<Account>(uuid, patch);
    if (patch.name !== undefined) await this.store.release(NAME_CLAIMS, a.name, a.uuid);
    if (body.password !== undefined) await this.revokeSessions(uuid, caller.sessionId);
    return out;
  }

  /** Enable or disable a normal account; disabling ends its sessions and refuses logins. */
  async changeState(uuid: string, stateEvent: 'enable' | 'disable'): Promise<Account> {
    const a = await this.store.get<Account>(uuid);
    if (!a || a.kind !== ACCOUNT_KIND) throw new TStackError('NOT_FOUND', `account ${uuid} not found`);
    if (a.type === 'SystemAdmin') throw new TStackError('CONFLICT', 'the admin account cannot be disabled');
    if (a.state === 'Deleting') throw new TStackError('CONFLICT', `account '${a.name}' is being deleted; DELETE it again to resume`);
    const to = stateEvent === 'disable' ? 'Disabled' : 'Enabled';
    const out = await this.store.update<Account>(uuid, { state: to });
    if (to === 'Disabled') await this.revokeSessions(uuid);
    return out;
  }

  /** Admin only; the admin account itself is never deleted; refused while the account owns resources. */
  async deleteAccount(uuid: string, ownedKinds: string[]): Promise<void> {
    const a = await this.store.get<Account>(uuid);
    if (!a || a.kind !== ACCOUNT_KIND) throw new TStackError('NOT_FOUND', `account ${uuid} not found`);
    if (a.type === 'SystemAdmin') throw new TStackError('CONFLICT', 'the admin account cannot be deleted');
    const owned: string[] = [];
    for (const kind of ownedKinds) {
      const r = await this.store.list({ kind, ownerAccountUuid: uuid, limit: 0 });
      if (r.total > 0) owned.push(`${r.total} ${kind}`);
    }
    if (owned.length) throw new TStackError('CONFLICT', `account '${a.name}' still owns ${owned.join(', ')}; delete those first`, { owned });
    await this.revokeSessions(uuid);
    await this.store.delete(uuid);
    await this.store.release(NAME_CLAIMS, a.name, a.uuid);
  }

  async login(accountName: string, password: string, userName?: string): Promise<{ token: string; expiresAt: string; accountUuid: string; userUuid?: string }> {
    const a = await this.findByName(accountName);
    const u = a && userName !== undefined ? await this.findUser(a.uuid, userName) : undefined;
    const hash = userName !== undefined ? u?._passwordHash : a?._passwordHash;
    // same answer (and similar time) for an unknown name and a wrong password
    const ok = hash ? await verifyPassword(password, hash) : (await hashPassword(password), false);
    if (!a || !ok) throw new TStackError('UNAUTHORIZED', userName !== undefined ? 'wrong account name, user name or password' : 'wrong account name or password');
    if (a.state !== 'Enabled') throw new TStackError('UNAUTHORIZED', a.state === 'Deleting' ? `account '${a.name}' is being deleted` : `account '${a.name}' is disabled; ask the admin to enable it`);
    const token = randomBytes(32).toString('base64url');
    const now = Date.now();
    const doc: SessionDoc = { accountUuid: a.uuid, createDate: new Date(now).toISOString(), expiresAt: new Date(now + this.sessionTtlMs).toISOString() };
    if (u) doc.userUuid = u.uuid;
    await this.store.putDoc(SESSION_DOCS, sha256(token), doc);
    return u ? { token, expiresAt: doc.expiresAt, accountUuid: a.uuid, userUuid: u.uuid } : { token, expiresAt: doc.expiresAt, accountUuid: a.uuid };
  }

  /** A user (controller/identity) of an account by name. */
  async findUser(accountUuid: string, name: string): Promise<(Resource & { _passwordHash: string }) | undefined> {
    const r = await this.store.list<Resource & { _passwordHash: string }>({ kind: USER_KIND, ownerAccountUuid: accountUuid, filters: [{ field: 'name', op: '=', value: name }], limit: 1 });
    return r.items[0];
  }

  /** The principal of a bearer token, or UNAUTHORIZED. */
  async authenticate(token: string | undefined): Promise<Principal> {
    if (!token) throw new TStackError('UNAUTHORIZED', 'missing session: log in with POST /v1/sessions and send Authorization: Bearer <token>');
    if (token.startsWith('ak:')) return this.authenticateKey(token);
    if (token.startsWith('hm:')) {
      const p = this.signed.get(token);
      if (!p) throw new TStackError('UNAUTHORIZED', 'unknown signed request');
      return p;
    }
    const id = sessionIdOf(token);
    const now = Date.now();
    const cache = cacheOf(this.store);
    const hit = cache.get(id);
    // one controller on its own SQLite file ends every session through endSession here, which
    // drops the entry: a fresh one is exact without reading the doc again (issue 19). On a
    // shared Redis another controller may end it: the doc is read on every request there.
    let s = hit && hit.until > now && this.store.backend === 'sqlite' ? hit.s : await this.store.getDoc<SessionDoc>(SESSION_DOCS, id);
    if (!s) throw new TStackError('UNAUTHORIZED', 'unknown or ended session: log in again');
    if (!hit) rememberSessionId(token, id);
    if (s.expiresAt < new Date(now).toISOString()) {
      await this.endSession(id);
      throw new TStackError('UNAUTHORIZED', `session expired at ${s.expiresAt}: log in again`);
    }
    const last = Date.parse(s.lastUsed ?? s.createDate);
    // (kept until gcSessions: deleting it here would turn this answer into "unknown session" for the next check of the same request)
    if (now - last > this.sessionIdleMs) throw new TStackError('UNAUTHORIZED', `session idle for more than ${Math.round(this.sessionIdleMs / 1000)} s: log in again`);
    if (now - last > Math.min(60_000, this.sessionIdleMs / 4)) {
      s = { ...s, lastUsed: new Date(now).toISOString() };
      await this.store.putDoc(SESSION_DOCS, id, s);
      if (hit) hit.s = s;
    }
    if (hit && hit.until > now && hit.p.accountUuid === s.accountUuid && hit.p.userUuid === s.userUuid) return hit.p;
    const a = await this.store.get<Account>(s.accountUuid);
    if (!a || a.kind !== ACCOUNT_KIND) throw new TStackError('UNAUTHORIZED', 'the account of this session no longer exists');
    if (a.state !== 'Enabled') throw new TStackError('UNAUTHORIZED', `account '${a.name}' is ${a.state === 'Deleting' ? 'being deleted' : 'disabled'}`);
    const p: Principal = { accountUuid: a.uuid, accountName: a.name, isAdmin: a.type === 'SystemAdmin', sessionId: id };
    if (s.userUuid !== undefined) {
      const u = await this.store.get(s.userUuid);
      if (!u || u.kind !== USER_KIND || u.ownerAccountUuid !== a.uuid) throw new TStackError('UNAUTHORIZED', 'the user of this session no longer exists');
      p.userUuid = u.uuid;
      p.userName = u.name;
    }
    if (cache.size >= 10_000) cache.clear();
    cache.set(id, { p, s, until: now + PRINCIPAL_CACHE_MS });
    return p;
  }

  /** Delete a session doc and forget its cached principal. */
  private async endSession(id: string): Promise<void> {
    cacheOf(this.store).delete(id);
    await this.store.deleteDoc(SESSION_DOCS, id);
  }

  /** `ak:<accessKeyId>:<secret>`: the principal of an enabled access key (its account, or its user). */
  private async authenticateKey(token: string): Promise<Principal> {
    const m = /^ak:([A-Za-z0-9]{8,64}):([A-Za-z0-9_-]{16,128})$/.exec(token);
    const bad = new TStackError('UNAUTHORIZED', 'unknown, revoked or malformed access key');
    if (!m) throw bad;
    const k = await this.enabledKey(m[1]!, bad);
    const want = Buffer.from(String(k._secretHash ?? ''), 'hex');
    const got = createHash('sha256').update(m[2]!).digest();
    if (want.length !== got.length || !timingSafeEqual(want, got)) throw bad;
    return this.keyPrincipal(k, bad);
  }

  private async enabledKey(accessKeyId: string, bad: TStackError): Promise<Resource> {
    const k = (await this.store.list({ kind: ACCESS_KEY_KIND, filters: [{ field: 'accessKeyId', op: '=', value: accessKeyId }], limit: 1 })).items[0];
    if (!k || k.state !== 'Enabled') throw bad;
    return k;
  }

  private async keyPrincipal(k: Resource, bad: TStackError): Promise<Principal> {
    const a = await this.store.get<Account>(k.ownerAccountUuid);
    if (!a || a.kind !== ACCOUNT_KIND || a.state !== 'Enabled') throw new TStackError('UNAUTHORIZED', 'the account of this access key is gone or disabled');
    const p: Principal = { accountUuid: a.uuid, accountName: a.name, isAdmin: a.type === 'SystemAdmin', sessionId: `ak:${k.uuid}` };
    if (typeof k.userUuid === 'string') {
      const u = await this.store.get(k.userUuid);
      if (!u || u.kind !== USER_KIND || u.ownerAccountUuid !== a.uuid) throw bad;
      p.userUuid = u.uuid;
      p.userName = u.name;
    }
    return p;
  }

  /**
   * Verify an HMAC-signed request (controller/auth/hmac.ts): key, signature (constant time),
   * date within the skew window, nonce unused (claimed here). Answers a token for this request
   * only, valid until endSigned: the API's later checks authenticate it like a bearer token.
   */
  async verifySigned(r: { authorization: string; method: string; url: string; date: string; body: Buffer | string }, now = Date.now()): Promise<string> {
    const parts = parseSignedAuthorization(r.authorization);
    if (!parts) throw new TStackError('UNAUTHORIZED', 'malformed signed request: expected Authorization: TSTACK-HMAC-SHA256 Credential=<accessKeyId>, Nonce=<16-64 of A-Za-z0-9_->, Signature=<64 hex>');
    const t = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/.test(r.date) ? Date.parse(r.date) : NaN;
    if (!Number.isFinite(t)) throw new TStackError('UNAUTHORIZED', 'signed request: X-Tstack-Date must be an ISO 8601 UTC time (e.g. 2026-01-01T00:00:00.000Z)');
    if (Math.abs(now - t) > HMAC_SKEW_MS) throw new TStackError('UNAUTHORIZED', `signed request: X-Tstack-Date is more than ${HMAC_SKEW_MS / 1000} s from the controller's clock`);
    const bad = new TStackError('UNAUTHORIZED', 'signed request: unknown or revoked access key, or a wrong signature');
    const k = await this.enabledKey(parts.keyId, bad);
    const want = signature(String(k._secretHash ?? ''), stringToSign(r.method, r.url, r.date, parts.nonce, r.body));
    if (!signaturesEqual(want, parts.signature)) throw bad;
    const p = await this.keyPrincipal(k, bad);
    await this.gcNonces(now);
    if (!(await this.store.claim(NONCE_CLAIMS, `${parts.keyId}:${parts.nonce}`, `${t}:${randomBytes(8).toString('hex')}`))) {
      throw new TStackError('UNAUTHORIZED', 'signed request: this nonce was already used (a replay); sign every request with a new nonce');
    }
    const token = `hm:${randomBytes(24).toString('base64url')}`;
    this.signed.set(token, p);
    return token;
  }

  endSigned(token: string): void {
    this.signed.delete(token);
  }

  /** Nonces older than two skew windows: their dates are refused anyway. At most once a minute. */
  private async gcNonces(now: number): Promise<void> {
    if (now - this.nonceGcAt < 60_000) return;
    this.nonceGcAt = now;
    for (const c of await this.store.claims(NONCE_CLAIMS)) {
      const t = Number(c.owner.split(':')[0]);
      if (!(now - t < 2 * HMAC_SKEW_MS)) await this.store.release(NONCE_CLAIMS, c.key, c.owner);
    }
  }

  async logout(p: Principal): Promise<void> {
    await this.endSession(p.sessionId);
  }

  /** End all sessions of an account (except `keep`); with `userUuid`, only that user's. */
  async revokeSessions(accountUuid: string, keep?: string, userUuid?: string): Promise<void> {
    for (const { id, doc } of await this.store.listDocs<SessionDoc>(SESSION_DOCS)) {
      if (doc.accountUuid === accountUuid && id !== keep && (userUuid === undefined || doc.userUuid === userUuid)) await this.endSession(id);
    }
  }

  /** Drop expired sessions. */
  async gcSessions(): Promise<number> {
    const now = new Date().toISOString();
    let n = 0;
    for (const { id, doc } of await this.store.listDocs<SessionDoc>(SESSION_DOCS)) {
      if (doc.expiresAt < now) {
        await this.endSession(id);
        n++;
      }
    }
    return n;
  }
}
