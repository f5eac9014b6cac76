// The lean way in for API reads (issue 19): GET /v1/<collection> and GET /v1/<collection>/<uuid>
// run the same layers as through Koa — errors, metrics and request log; the in-flight limit; the
// API middlewares that look at reads (the policy gate); authentication; the route's handler — on
// a plain context, answered as Koa answers (status, headers in the same order, body). Koa's
// context, request/response delegation, router regexps and respond were most of a small read's
// CPU. Anything else — other methods, HEAD, signed requests, other paths, paths Koa would decode
// or normalise, paths a middleware serves itself — goes to Koa.
import type Koa from 'koa';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isSignedAuthorization } from '../auth/hmac.js';

/**
 * How an API middleware stands to reads of collections (the read path runs only the middlewares
 * that check them; a middleware with no stance turns the read path off, so none is ever skipped
 * unknowingly).
 *  - `reads: 'ignores'`: it passes every GET of /v1/<collection>[/<uuid>] on untouched;
 *  - `reads: 'checks'`: it may refuse such a GET (the read path runs it, on its plain context:
 *    it may use method, path, get(), req, state, request.body and throw);
 *  - `claims`: first path segments under /v1/ it answers itself (those reads stay on Koa).
 * A @koa/router middleware needs no stance: its routes are its claims.
 */
export interface ReadStance {
  reads: 'ignores' | 'checks';
  claims?: string[];
}

// kept on the middleware itself under a registered symbol: a module loaded twice (mocha loads
// some through require, some through import) still sees the other copy's stances
const STANCE = Symbol.for('tstack.api.readStance');

/** Say how a middleware stands to reads (see ReadStance); returns the middleware. */
export function withReadStance<M extends object>(mw: M, s: ReadStance): M {
  Object.defineProperty(mw, STANCE, { value: s });
  return mw;
}

interface RouterLike {
  stack: Array<{ path: string; methods: string[] }>;
}

/**
 * A middleware's stance: declared, or a router's (its routes' first segments under /v1/ as
 * claims; undefined when one starts with a parameter, which could be any collection).
 */
export function readStanceOf(mw: object): ReadStance | undefined {
  const s = (mw as { [STANCE]?: ReadStance })[STANCE];
  if (s) return s;
  const router = (mw as { router?: RouterLike }).router;
  if (!router || !Array.isArray(router.stack)) return undefined;
  const claims = routerClaims(router);
  return claims ? { reads: 'ignores', claims } : undefined;
}

/**
 * The first segments under /v1/ of a router's routes that could answer a read path's path
 * (/v1/<name> or /v1/<name>/<id>); undefined when a route could answer any of them (a parameter
 * or pattern where the name is). Deeper routes (/v1/vm-instances/:uuid/migration-targets) never
 * do. `skip`: routes to leave out (the API's own generic ones).
 */
export function routerClaims(router: RouterLike, skip: (path: string) => boolean = () => false): string[] | undefined {
  const out: string[] = [];
  for (const l of router.stack) {
    if (skip(l.path)) continue;
    const segs = l.path.replace(/(.)\/$/, '$1').split('/').slice(1);
    // optional parts, wildcards and groups may span segments: such a route may match anything
    if (segs.some((x) => /[*({?+]/.test(x))) return undefined;
    if (segs[0] !== 'v1') {
      if (segs[0]?.startsWith(':')) return undefined;
      continue;
    }
    if (segs.length < 2 || segs.length > 3) continue;
    const name = segs[1]!;
    if (name === '' || name.startsWith(':')) return undefined;
    out.push(name.toLowerCase());
  }
  return out;
}

export type ReadRoute = '/v1/:collection' | '/v1/:collection/:uuid';

export interface ReadMatch {
  path: string;
  querystring: string;
  route: ReadRoute;
  params: Record<string, string>;
}

// a path the router would take as is: no percent-decoding, no trailing slash, no case folding
const READ_PATH = /^\/v1\/([a-z0-9][a-z0-9-]*)(?:\/([A-Za-z0-9_.~-]+))?$/;
// what makes parseurl (Koa's path and query) fall back to url.parse, which may read it otherwise
const ODD_URL = /[\t\n\f\r #\u00a0\ufeff]/;

/**
 * The read-path route of a request, or undefined for Koa. `served(collection)`: a collection the
 * API's GET routes answer and nothing before them claims.
 */
export function matchRead(req: IncomingMessage, served: (collection: string) => boolean): ReadMatch | undefined {
  if (req.method !== 'GET') return undefined;
  const url = req.url ?? '';
  if (!url.startsWith('/v1/') || ODD_URL.test(url)) return undefined;
  const auth = req.headers.authorization;
  if (auth !== undefined && isSignedAuthorization(auth)) return undefined;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const m = READ_PATH.exec(path);
  if (!m || !served(m[1]!)) return undefined;
  const querystring = q < 0 ? '' : url.slice(q + 1);
  if (m[2] === undefined) return { path, querystring, route: '/v1/:collection', params: { collection: m[1]! } };
  return { path, querystring, route: '/v1/:collection/:uuid', params: { collection: m[1]!, uuid: m[2] } };
}

/**
 * A query string as Koa's ctx.query gives it (URLSearchParams: '+' is a space; a repeated key
 * an array, in order; keys such as __proto__ own properties), in one pass: Koa's getAll per key
 * is quadratic in repeated keys.
 */
export function parseQueryString(qs: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (qs === '') return out;
  for (const [k, v] of new URLSearchParams(qs)) {
    if (!Object.hasOwn(out, k)) Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
    else {
      const cur = out[k]!;
      if (Array.isArray(cur)) cur.push(v);
      else out[k] = [cur, v];
    }
  }
  return out;
}

const EMPTY_STATUS = new Set([204, 205, 304]);

/**
 * What the read path's layers and handlers use of a Koa context — method, path, query, params,
 * request headers (get), response headers (set, response.get), status, body, state,
 * request.body, req, res, the matched route — and Koa's answer of it (respond), without Koa's
 * per-request objects. Status and headers go to the response as they are set, as in Koa.
 */
export class ReadContext {
  readonly method: string;
  readonly state: Record<string, unknown> = {};
  readonly request: { body?: unknown } = {};
  readonly response: { get(name: string): unknown };
  readonly path: string;
  readonly querystring: string;
  readonly params: Record<string, string>;
  readonly _matchedRoute: string;
  private explicitStatus = false;
  private bodyValue: unknown;
  /** A text body's bytes: encoded once for its length and the write (Koa measures, then Node encodes). */
  private bytes?: Buffer;
  private queryValue?: Record<string, string | string[]>;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    m: ReadMatch,
  ) {
    this.method = req.method ?? '';
    this.path = m.path;
    this.querystring = m.querystring;
    this.params = m.params;
    this._matchedRoute = m.route;
    this.response = { get: (name) => res.getHeader(name) };
    res.statusCode = 404;
  }

  get query(): Record<string, string | string[]> {
    return (this.queryValue ??= parseQueryString(this.querystring));
  }

  /** A request header, as Koa's ctx.get. */
  get(name: string): string {
    const field = name.toLowerCase();
    const h = this.req.headers;
    if (field === 'referer' || field === 'referrer') return (h.referrer as string | undefined) || h.referer || '';
    return (h[field] as string | undefined) || '';
  }

  set(name: string, value: string): void {
    if (!this.res.headersSent) this.res.setHeader(name, value);
  }

  get status(): number {
    return this.res.statusCode;
  }

  set status(code: number) {
    this.explicitStatus = true;
    this.res.statusCode = code;
  }

  get body(): unknown {
    return this.bodyValue;
  }

  /** Koa's body setter, for what the read handlers and the error layer assign: text and JSON. */
  set body(v: unknown) {
    this.bodyValue = v;
    this.bytes = undefined;
    const res = this.res;
    if (v === undefined || v === null) {
      if (!EMPTY_STATUS.has(res.statusCode)) {
        if (this.type() === 'application/json') {
          this.bodyValue = 'null';
          return;
        }
        this.status = 204;
      }
      res.removeHeader('Content-Type');
      res.removeHeader('Content-Length');
      res.removeHeader('Transfer-Encoding');
      return;
    }
    if (!this.explicitStatus) this.status = 200;
    if (typeof v === 'string') {
      if (!res.hasHeader('Content-Type')) this.set('Content-Type', /^\s*</.test(v) ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8');
      this.bytes = Buffer.from(v);
      this.setLength(this.bytes.length);
      return;
    }
    res.removeHeader('Content-Length');
    const t = this.type();
    if (!t || !/\bjson\b/i.test(t)) this.set('Content-Type', 'application/json; charset=utf-8');
  }

  private type(): string {
    const t = this.res.getHeader('Content-Type');
    return typeof t === 'string' ? t.split(';', 1)[0]! : '';
  }

  private setLength(n: number): void {
    if (!this.res.hasHeader('Transfer-Encoding')) this.res.setHeader('Content-Length', n);
  }

  /** Koa's respond for these bodies. */
  respond(): void {
    const res = this.res;
    if (res.writableEnded || res.destroyed) return;
    const body = this.bodyValue;
    if (EMPTY_STATUS.has(res.statusCode)) return void res.end();
    if (body === undefined || body === null) {
      // never given by the read handlers (the error layer turns a 404 without body into its error)
      const text = String(res.statusCode);
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      this.setLength(Buffer.byteLength(text));
      return void res.end(text);
    }
    if (typeof body === 'string') return void res.end(this.bytes ?? body);
    const bytes = Buffer.from(JSON.stringify(body));
    if (!res.headersSent) this.setLength(bytes.length);
    res.end(bytes);
  }
}

/** Run middlewares one after the other (koa-compose's order, without its per-call closures). */
export function chain(ctx: Koa.Context, layers: readonly Koa.Middleware[], last: () => Promise<void>): Promise<void> {
  const at = (i: number): Promise<void> => {
    try {
      return i === layers.length ? last() : Promise.resolve(layers[i]!(ctx, () => at(i + 1)));
    } catch (e) {
      return Promise.reject(e);
    }
  };
  return at(0);
}

/** Types for the listener: `ctx` is a ReadContext passed as the Koa context the layers expect. */
export type ReadLayers = (ctx: Koa.Context) => Promise<void>;

/**
 * The HTTP listener: reads the read path serves (while `enabled()`), the rest through `koa`.
 * `layers` runs a matched request's whole chain; `served` counts them (tests).
 */
export function readListener(o: { koa: (req: IncomingMessage, res: ServerResponse) => unknown; served: (collection: string) => boolean; layers: ReadLayers; enabled: () => boolean; onServed?: () => void; onError: (e: unknown) => void }): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const m = o.enabled() ? matchRead(req, o.served) : undefined;
    if (!m) return void o.koa(req, res);
    o.onServed?.();
    const ctx = new ReadContext(req, res, m);
    o.layers(ctx as unknown as Koa.Context)
      .then(() => ctx.respond())
      .catch((e: unknown) => {
        o.onError(e);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
  };
}
