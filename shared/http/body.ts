// JSON request bodies for every tstack HTTP server (controller and agents), decoded strictly so
// that no body can crash a handler, stall the event loop or balloon in memory (issue 20):
//  - only POST/PUT/PATCH bodies are read; a body must be JSON (415 otherwise, charset utf-8);
//  - Content-Encoding identity, gzip or deflate (415 for others, 400 when the body is not what
//    the header says); inflation stops at a cap (413), so a gzip bomb is never inflated;
//  - the raw size is capped before reading (Content-Length) and while reading (413; the rest of the
//    body, up to a bound, is read and discarded first so the client sees the answer, not a reset);
//  - UTF-8 must be valid (no silent U+FFFD), strings and keys well-formed Unicode (no lone
//    surrogates), nesting at most `maxDepth` deep (later recursive walks cannot overflow).
import type Koa from 'koa';
import { promisify } from 'node:util';
import { gunzip, inflate, type InputType, type ZlibOptions } from 'node:zlib';
import { TStackError } from '../errors.js';

export interface JsonBodyOptions {
  /** Max bytes on the wire. */
  limit: number;
  /** A smaller limit for some requests (e.g. unauthenticated ones), else `limit`. */
  limitFor?: (ctx: Koa.Context) => number | undefined;
  /** Max bytes after Content-Encoding is undone (default `limit`). */
  inflatedLimit?: number;
  /** Max nesting of arrays/objects (default 32). */
  maxDepth?: number;
}

const METHODS = new Set(['POST', 'PUT', 'PATCH']);
type Inflate = (buf: InputType, o: ZlibOptions) => Promise<Buffer>;
const DECODERS: Record<string, Inflate> = { gzip: promisify(gunzip), 'x-gzip': promisify(gunzip), deflate: promisify(inflate) };

const bad = (message: string): TStackError => new TStackError('INVALID_ARGUMENT', message, { field: '(body)' });
const tooLarge = (message: string): TStackError => new TStackError('PAYLOAD_TOO_LARGE', message, { field: '(body)' });
const unsupported = (message: string): TStackError => new TStackError('UNSUPPORTED_MEDIA_TYPE', message, { field: '(body)' });

/** Is this request carrying a body (RFC 9112: Transfer-Encoding, or a non-zero Content-Length)? */
function hasBody(ctx: Koa.Context): boolean {
  const cl = ctx.get('content-length');
  return ctx.get('transfer-encoding') !== '' || (cl !== '' && cl !== '0');
}

/** application/json or application/<x>+json, charset (if any) utf-8. */
export function isJsonType(contentType: string): boolean {
  const [type, ...params] = contentType.split(';').map((s) => s.trim().toLowerCase());
  if (!type || !/^application\/([a-z0-9.+-]+\+)?json$/.test(type)) return false;
  for (const p of params) {
    const [k, v] = p.split('=', 2).map((s) => s.trim());
    if (k === 'charset' && v?.replace(/"/g, '') !== 'utf-8' && v?.replace(/"/g, '') !== 'utf8') return false;
  }
  return true;
}

// A refused body is read and thrown away (up to these bounds) before the 413 is sent: Node destroys
// a `Connection: close` client's socket as soon as the answer is written, and a client still sending
// then gets a reset (EPIPE) instead of the 413. Beyond the bounds the answer goes out anyway.
const DRAIN_BYTES = 16 * 1024 * 1024;
const DRAIN_MS = 5_000;

/** Read and discard the rest of a request body: until its end, `maxBytes`, `ms`, or an error. */
function discard(req: Koa.Context['req'], maxBytes: number, ms: number): Promise<void> {
  if (req.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    let n = 0;
    const finish = (): void => {
      clearTimeout(timer);
      req.off('data', onData).off('end', finish).off('error', finish).off('aborted', finish);
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      n += chunk.length;
      if (n > maxBytes) finish();
    };
    const timer = setTimeout(finish, ms);
    req.on('data', onData).on('end', finish).on('error', finish).on('aborted', finish);
    req.resume();
  });
}

function readRaw(ctx: Koa.Context, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = ctx.req;
    const chunks: Buffer[] = [];
    let n = 0;
    const done = (e?: Error): void => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onAborted);
      if (e) reject(e);
      // a body that came in one chunk (most: up to 64 KB) is used as is, not copied
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n));
    };
    const onData = (chunk: Buffer): void => {
      n += chunk.length;
      if (n > limit) {
        // answer at once; Node discards the rest of the body (bounded by the request timeout),
        // so the client reads the 413 instead of a connection reset
        chunks.length = 0;
        req.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onAborted);
        void discard(req, DRAIN_BYTES, DRAIN_MS).then(() => done(tooLarge(`request body larger than ${limit} bytes`)));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => done();
    const onError = (e: Error): void => done(bad(`request body could not be read: ${e.message}`));
    const onAborted = (): void => done(bad('the client went away while sending the body'));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('aborted', onAborted);
  });
}

async function undoEncoding(ctx: Koa.Context, raw: Buffer, inflatedLimit: number): Promise<Buffer> {
  const enc = ctx.get('content-encoding').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return raw;
  const decode = Object.hasOwn(DECODERS, enc) ? DECODERS[enc] : undefined;
  if (!decode) throw unsupported(`Content-Encoding '${enc}' is not supported (use gzip, deflate or none)`);
  try {
    return await decode(raw, { maxOutputLength: inflatedLimit });
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) throw tooLarge(`request body larger than ${inflatedLimit} bytes once decompressed`);
    throw bad(`request body is not valid ${enc} data (Content-Encoding: ${enc})`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

// in 'u' mode a surrogate pair is one code point: what is left in Cs is a lone surrogate
const LONE_SURROGATE = /\p{Cs}/u;
// String.prototype.isWellFormed (V8 11.3, Node 20) scans without the regex engine: a 100 KB body
// has thousands of strings, and this walk runs on every request
const nativeWellFormed = (String.prototype as { isWellFormed?: (this: string) => boolean }).isWellFormed;
/** Is the string well-formed UTF-16 (no lone surrogates: encodable as UTF-8)? */
export const isWellFormed = nativeWellFormed ? (s: string): boolean => nativeWellFormed.call(s) : (s: string): boolean => !LONE_SURROGATE.test(s);

interface Frame {
  v: object;
  depth: number;
  parent?: Frame;
  key?: string;
}

const pathOf = (f: Frame | undefined, key?: string): string => {
  const parts: string[] = key === undefined ? [] : [key];
  for (let x = f; x?.key !== undefined; x = x.parent) parts.unshift(x.key);
  return parts.join('.') || '(body)';
};

const notUnicode = (field: string): TStackError => new TStackError('INVALID_ARGUMENT', `${field}: not valid Unicode (lone surrogate)`, { field, reason: 'not valid Unicode' });

/**
 * Walk a parsed JSON value without recursion: nesting depth, and well-formed Unicode in every
 * string and key. Linear in the value; paths are only built for the error.
 */
export function checkJsonValue(value: unknown, maxDepth: number): void {
  if (typeof value === 'string') {
    if (!isWellFormed(value)) throw notUnicode('(body)');
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const stack: Frame[] = [{ v: value, depth: 1 }];
  while (stack.length > 0) {
    const f = stack.pop()!;
    if (f.depth > maxDepth) throw new TStackError('INVALID_ARGUMENT', `${pathOf(f)}: nested deeper than ${maxDepth} levels`, { field: pathOf(f), reason: 'nested too deep' });
    if (Array.isArray(f.v)) {
      for (let i = 0; i < f.v.length; i++) {
        const x: unknown = f.v[i];
        if (typeof x === 'string') {
          if (!isWellFormed(x)) throw notUnicode(pathOf(f, String(i)));
        } else if (x !== null && typeof x === 'object') stack.push({ v: x, depth: f.depth + 1, parent: f, key: String(i) });
      }
      continue;
    }
    const o = f.v as Record<string, unknown>;
    for (const k in o) {
      if (!isWellFormed(k)) throw notUnicode(pathOf(f));
      const x = o[k];
      if (typeof x === 'string') {
        if (!isWellFormed(x)) throw notUnicode(pathOf(f, k));
      } else if (x !== null && typeof x === 'object') stack.push({ v: x, depth: f.depth + 1, parent: f, key: k });
    }
  }
}

/** Decode the request body into ctx.request.body (undefined when there is none). */
export async function readJsonBody(ctx: Koa.Context, opts: JsonBodyOptions): Promise<unknown> {
  if (!METHODS.has(ctx.method) || !hasBody(ctx)) return undefined;
  const small = opts.limitFor?.(ctx);
  const o = small === undefined ? opts : { ...opts, limit: small, inflatedLimit: Math.min(small, opts.inflatedLimit ?? small) };
  const type = ctx.get('content-type');
  if (!isJsonType(type)) throw unsupported(`request body must be JSON (Content-Type: application/json), got '${type || '(none)'}'`);
  if (Number(ctx.get('content-length') || '0') > o.limit) {
    await discard(ctx.req, DRAIN_BYTES, DRAIN_MS);
    throw tooLarge(`request body larger than ${o.limit} bytes`);
  }
  const raw = await readRaw(ctx, o.limit);
  const bytes = await undoEncoding(ctx, raw, o.inflatedLimit ?? o.limit);
  // the body as sent, decoded: what a signed request's signature covers (controller/auth/hmac.ts)
  ctx.state.rawBody = bytes;
  if (bytes.length === 0) return undefined;
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw bad('request body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw bad(`request body is not valid JSON: ${(e as Error).message.slice(0, 200)}`);
  }
  checkJsonValue(value, o.maxDepth ?? 32);
  // the same body as text, for a handler that stores the request whole (no second decode)
  ctx.state.rawText = text;
  return value;
}

/** Middleware: ctx.request.body = the decoded JSON body (see readJsonBody). */
export function jsonBody(o: JsonBodyOptions): Koa.Middleware {
  return async (ctx, next) => {
    (ctx.request as { body?: unknown }).body = await readJsonBody(ctx, o);
    await next();
  };
}
