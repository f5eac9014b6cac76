// Hostile requests for the agents' protocol endpoints (shared/protocol command declarations on
// shared/agent/server.ts), generated like the API fuzz (test/fuzz/api-requests.ts):
//  - without a token, or with a wrong one: any body, near-valid or junk, any method and path;
//  - with the right token: bodies that can never pass the command's schema (an undeclared key
//    in a near-valid object, a non-object, broken JSON, a wrong content type or encoding), so
//    the fuzz exercises parsing and validation; only the read-only commands that take no
//    arguments (ping, status, facts) run, for a body of `null`.
import fc from 'fast-check';
import type { CommandDef } from '../../shared/protocol/command.js';
import { contentType, encodeBody, encoding, fromSchema, junkString, junkValue, oddMethod, pct, type FuzzRequest } from './api-requests.js';

export type AgentFuzzRequest = Omit<FuzzRequest, 'as'> & { as: 'token' | 'wrong' | 'anon' };

const isCommand = (v: unknown): v is CommandDef => typeof v === 'object' && v !== null && typeof (v as CommandDef).path === 'string' && 'request' in v;
export const commandsOf = (...mods: Array<Record<string, unknown>>): CommandDef[] => mods.flatMap((m) => Object.values(m).filter(isCommand));

const RAW = ['{"message": ', '['.repeat(5000), '{"a":' + '1'.repeat(10_000) + '}', 'null', '12', '"s"', '{"\\ud800":1}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}'];

/** null 4 times in 5, else a value of `a`. */
const sometimes = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.oneof({ arbitrary: fc.constant(null), weight: 4 }, { arbitrary: a, weight: 1 });

/** Requests for `commands` (the agent's), plus its other paths and junk ones. */
export function agentRequestArbitrary(commands: CommandDef[]): fc.Arbitrary<AgentFuzzRequest> {
  const paths = [...commands.map((c) => c.path), '/health', '/metrics', '/task/x'];
  return fc
    .record({
      cmd: fc.constantFrom(...commands),
      // mostly POST to the command's own path (null), sometimes another path or method
      path: sometimes(fc.oneof(fc.constantFrom(...paths), junkString.map((s) => '/' + pct(s)), fc.string({ maxLength: 20 }).map((s) => `/task/${pct(s)}`))),
      method: sometimes(oddMethod),
      as: fc.constantFrom('token', 'token', 'token', 'wrong', 'anon') as fc.Arbitrary<'token' | 'wrong' | 'anon'>,
      rawBody: fc.option(fc.constantFrom(...RAW), { freq: 5 }),
      type: contentType,
      enc: encoding,
      taskId: fc.option(fc.oneof(junkString, fc.uuid()), { freq: 3 }),
      callback: fc.option(fc.oneof(junkString, fc.constantFrom('http://127.0.0.1:1/cb', 'ftp://x', 'http://a b', 'javascript:alert(1)')), { freq: 3 }),
    })
    .chain((r) => fromSchema(r.cmd.request as Record<string, any>, {}).map((value) => ({ ...r, value })))
    .chain((r) => (r.as === 'token' ? fc.constantFrom(...spoilers(r.value)).map((value) => ({ ...r, value })) : fc.constant(r)))
    .map((r) => {
      const method = r.method ?? 'POST';
      const headers: Record<string, string> = {};
      if (r.taskId !== null) headers['x-task-id'] = pct(r.taskId).length > 300 ? 'x'.repeat(300) : safeHeader(r.taskId);
      if (r.callback !== null) headers['x-callback-url'] = safeHeader(r.callback);
      const req: AgentFuzzRequest = { method, path: r.path ?? r.cmd.path, headers, as: r.as };
      const raw = r.rawBody ?? undefined;
      if (['POST', 'PUT', 'PATCH'].includes(method)) {
        const { body, enc } = encodeBody(r.value, raw, r.enc);
        req.body = body;
        if (r.type) headers['content-type'] = r.type;
        if (enc) headers['content-encoding'] = enc;
      }
      return req;
    });
}

/** Versions of a generated value that no command schema accepts (commands take objects without extra keys). */
function spoilers(v: unknown): unknown[] {
  const out: unknown[] = [null, 'a string', 42, [v], { ...(isObj(v) ? v : {}), 'fuzz-undeclared-key': true }];
  if (isObj(v)) out.push({ ...v, 'fuzz-undeclared-key': v }, { 'fuzz-undeclared-key': 1, ...v });
  return out;
}
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/** A header value Node's client will send (no CR/LF/control characters). */
const safeHeader = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?').slice(0, 2000);

/** The request as sent: with the agent's token, a wrong one, or none. */
export const withAgentToken =
  (token: string) =>
  (r: AgentFuzzRequest): AgentFuzzRequest => {
    if (r.as === 'anon') return r;
    return { ...r, headers: { ...r.headers, authorization: `Bearer ${r.as === 'token' ? token : token.slice(1) + 'x'}` } };
  };

export { junkValue };
