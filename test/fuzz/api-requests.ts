// Hostile requests generated from the controller's OpenAPI document (fast-check arbitraries):
// every operation, with wrong types, missing and extra fields, huge and deep values, lone
// surrogates, odd methods, content types and encodings, and query-language abuse on lists.
// Used by test/integration/controller/api-fuzz.test.ts (short, fixed seed) and
// scripts/bench/fuzz.ts (long).
import fc from 'fast-check';
import { gzipSync } from 'node:zlib';

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Send with the admin's token, a normal account's, or none. */
  as: 'admin' | 'user' | 'anon';
}

type Schema = Record<string, any>;

/** Percent-encode every byte (encodeURIComponent throws on lone surrogates). */
export const pct = (s: string): string => [...Buffer.from(s, 'utf8')].map((b) => '%' + b.toString(16).padStart(2, '0')).join('');

export const junkString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom('', ' ', '\u0000', '\ud800', 'a\udc00b', '😀', '%', '%'.repeat(300), '_'.repeat(50), '../../etc/passwd', '$(reboot)', "'; drop table x;--", 'constructor', '__proto__', 'toString'),
  fc.integer({ min: 1, max: 5000 }).map((n) => 'x'.repeat(n)),
);

export const junkValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    junkString,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(junkString, tie('v'), { maxKeys: 4 }),
  ),
})).v;

/** A value near the schema: valid-looking, then maybe broken. */
export function fromSchema(s: Schema | undefined, doc: Schema, depth = 0): fc.Arbitrary<unknown> {
  if (!s || depth > 4) return junkValue;
  if (s.$ref) return fromSchema(s.$ref.replace(/^#\//, '').split('/').reduce((o: any, k: string) => o?.[k], doc), doc, depth + 1);
  const variants: Array<fc.Arbitrary<unknown>> = [junkValue];
  if (s.enum) variants.push(fc.constantFrom(...(s.enum as unknown[])));
  if (s.anyOf) variants.push(...(s.anyOf as Schema[]).map((x) => fromSchema(x, doc, depth + 1)));
  if (s.oneOf) variants.push(...(s.oneOf as Schema[]).map((x) => fromSchema(x, doc, depth + 1)));
  switch (s.type) {
    case 'string':
      variants.push(fc.string({ maxLength: s.maxLength ?? 40 }), fc.uuid(), junkString);
      break;
    case 'integer':
    case 'number':
      variants.push(fc.integer({ min: -10, max: 1_000_000 }), fc.constantFrom(Number.MAX_SAFE_INTEGER, -1, 0, 1e308));
      break;
    case 'boolean':
      variants.push(fc.boolean());
      break;
    case 'array':
      variants.push(fc.array(fromSchema(s.items, doc, depth + 1), { maxLength: 5 }), fc.constant(Array.from({ length: 20_000 }, (_, i) => `i${i}`)));
      break;
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, Schema>;
      const rec: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, v] of Object.entries(props)) rec[k] = fromSchema(v, doc, depth + 1);
      variants.push(
        fc.record(rec, { requiredKeys: (s.required ?? []).filter((k: string) => k in rec) }),
        fc.record(rec, { requiredKeys: [] }).chain((o) => fc.dictionary(junkString, junkValue, { maxKeys: 3 }).map((extra) => ({ ...o, ...extra }))),
      );
      break;
    }
  }
  return fc.oneof(...variants);
}

const queryAbuse = fc.oneof(
  fc.constantFrom('q=name~=' + '%'.repeat(200) + 'b', 'q=constructor=1', 'q=__proto__=1', 'sort=toString', 'fields=hasOwnProperty', 'q=name!=x&'.repeat(500), 'limit=-1', 'limit=99999999999', 'start=1e400', 'count=maybe', 'sort=-', 'q=', 'q=%E0%80', 'q=name%3D%ED%A0%80', 'q=vmNics.ip=1', 'q=name?=' + 'a,'.repeat(1000)),
  fc.tuple(fc.constantFrom('q', 'sort', 'fields', 'limit', 'start', 'count', 'wait', 'cascade', 'x'), fc.string({ maxLength: 30 })).map(([k, v]) => `${k}=${pct(v)}`),
  fc.tuple(fc.constantFrom('name', 'uuid', 'state', 'createDate', 'tags', 'description'), fc.constantFrom('=', '!=', '>', '<', '>=', '<=', '~=', '?='), fc.string({ maxLength: 30 })).map(([f, op, v]) => `q=${pct(f + op + v)}`),
);

export const oddMethod = fc.constantFrom('TRACE', 'PROPFIND', 'PURGE', 'OPTIONS', 'HEAD', 'CONNECTX', 'DELETE', 'PATCH', 'PUT', 'POST', 'GET');
/** `a` one time in `oneIn`, else null: the abuse stays the exception, so most requests reach the
 * handlers' validation with schema-shaped bodies instead of stopping at a 405/415 in front of them. */
export const rare = <T>(a: fc.Arbitrary<T>, oneIn: number): fc.Arbitrary<T | null> =>
  fc.oneof({ arbitrary: fc.constant(null), weight: oneIn - 1 }, { arbitrary: a, weight: 1 });
export const contentType = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 6 },
  { arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'application/merge-patch+json', ''), weight: 1 },
);
export const encoding = fc.oneof(
  { arbitrary: fc.constant(''), weight: 6 },
  { arbitrary: fc.constantFrom('gzip', 'gzip-real', 'deflate', 'br', 'identity'), weight: 1 },
);

export function encodeBody(value: unknown, raw: string | undefined, enc: string): { body: Buffer; enc: string } {
  let b = Buffer.from(raw ?? JSON.stringify(value) ?? 'null');
  if (enc === 'gzip-real') {
    b = gzipSync(b);
    enc = 'gzip';
  }
  return { body: b, enc };
}

/** The request as sent: with the bearer token of the account it is sent as. */
export const withCredentials =
  (tokens: Record<string, string | undefined>) =>
  (r: FuzzRequest): FuzzRequest => {
    // a logout with the fuzzer's own session would turn every later request into a 401
    const logout = r.method === 'DELETE' && r.path.startsWith('/v1/sessions/current');
    const token = r.as === 'anon' || logout ? undefined : tokens[r.as];
    return token ? { ...r, headers: { ...r.headers, authorization: `Bearer ${token}` } } : r;
  };

/** Arbitrary requests for every operation of the document; `uuids` are real resource ids to aim at. */
export function requestArbitrary(doc: Schema, uuids: string[]): fc.Arbitrary<FuzzRequest> {
  const ops: Array<{ method: string; path: string; op: Schema }> = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Schema>)) {
    for (const [method, op] of Object.entries(item)) ops.push({ method: method.toUpperCase(), path, op });
  }
  const uuid = fc.oneof(fc.constantFrom(...(uuids.length ? uuids : ['x'])), fc.uuid(), junkString.map((s) => pct(s) || 'x'));
  return fc
    .record({
      pick: fc.constantFrom(...ops),
      uuid,
      method: rare(oddMethod, 5),
      query: rare(queryAbuse, 3),
      value: fc.constant(null),
      rawBody: rare(fc.constantFrom('{"name": ', '[' .repeat(5000), '{"a":' + '1'.repeat(10_000) + '}', 'null', '12', '"s"', '{"\\ud800":1}'), 6),
      type: contentType,
      enc: encoding,
      as: fc.constantFrom('admin', 'admin', 'user', 'anon') as fc.Arbitrary<'admin' | 'user' | 'anon'>,
    })
    .chain((r) => {
      const schema = r.pick.op.requestBody?.content?.['application/json']?.schema as Schema | undefined;
      return (schema ? fromSchema(schema, doc) : fc.option(junkValue, { freq: 3 })).map((value) => ({ ...r, value }));
    })
    .map((r) => {
      const path = r.pick.path.replace('{uuid}', String(r.uuid)) + (r.query ? `?${r.query}` : '');
      const method = r.method ?? r.pick.method;
      const headers: Record<string, string> = {};
      const req: FuzzRequest = { method, path, headers, as: r.as };
      if (['POST', 'PUT', 'PATCH'].includes(method) && (r.value !== null || r.rawBody !== null)) {
        const { body, enc } = encodeBody(r.value, r.rawBody ?? undefined, r.enc);
        req.body = body;
        if (r.type) headers['content-type'] = r.type;
        if (enc) headers['content-encoding'] = enc;
      }
      return req;
    });
}
