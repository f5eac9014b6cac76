// Drive generated requests at a server one after another and classify every answer: a 5xx, an
// answer slower than `answerMs` or no complete answer at all is a finding. Shared by the fuzz
// tests (short, fixed seed) and scripts/bench/fuzz (long).
import fc from 'fast-check';
import { rawRequest, type RawResponse } from '../harness/raw-http.js';

export interface FuzzTarget {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

export interface FuzzResult {
  requests: number;
  /** Answers by status (0: the connection was closed without an answer). */
  statuses: Record<number, number>;
  findings: string[];
  /** Every answer's latency, ms. */
  latencies: number[];
  seconds: number;
}

// Node's own HTTP parser refuses some generated request lines (e.g. an unknown method) by
// answering 400 and closing; a reset while we still send a body it refused early is the same
const PARSER_REFUSAL = /ECONNRESET|socket hang up|EPIPE|Parse Error/;

export async function fuzzRun<T>(o: {
  url: string;
  arbitrary: fc.Arbitrary<T>;
  /** The request to send for a generated case (credentials added here). */
  toRequest: (x: T) => FuzzTarget;
  seed: number;
  runs: number;
  answerMs: number;
  /** Give up on an answer after this long (a finding; default 30 s). */
  timeoutMs?: number;
  onProgress?: (done: number) => void;
  /** More rules for an answer: a finding's text, or undefined when the answer is fine. */
  check?: (x: T, r: FuzzTarget, a: RawResponse) => string | undefined;
  /** Clients sending at once, each its own stream of cases (seed, seed+1, …; default 1). */
  concurrency?: number;
}): Promise<FuzzResult> {
  const res: FuzzResult = { requests: 0, statuses: {}, findings: [], latencies: [], seconds: 0 };
  const t0 = performance.now();
  const n = Math.max(1, o.concurrency ?? 1);
  const client = (i: number): Promise<void> => fc.assert(
    fc.asyncProperty(o.arbitrary, async (x) => {
      const r = o.toRequest(x);
      const what = `${r.method} ${r.path.slice(0, 200)}`;
      res.requests++;
      try {
        const a = await rawRequest(o.url, { method: r.method, path: r.path, headers: r.headers, timeoutMs: o.timeoutMs ?? 30_000, ...(r.body ? { body: r.body } : {}) });
        res.statuses[a.status] = (res.statuses[a.status] ?? 0) + 1;
        res.latencies.push(a.ms);
        if (a.status >= 500) res.findings.push(`${what} → ${a.status} ${a.text.slice(0, 300)}`);
        else if (a.ms > o.answerMs) res.findings.push(`${what} → ${a.status} after ${Math.round(a.ms)} ms`);
        else {
          const f = o.check?.(x, r, a);
          if (f) res.findings.push(`${what} → ${a.status}: ${f}`);
        }
      } catch (e) {
        const m = (e as Error).message;
        res.statuses[0] = (res.statuses[0] ?? 0) + 1;
        if (!PARSER_REFUSAL.test(m) || !parserRefuses(r)) res.findings.push(`${what}: ${m}`);
      }
      if (res.requests % 500 === 0) o.onProgress?.(res.requests);
      return true;
    }),
    { seed: o.seed + i, numRuns: Math.floor(o.runs / n) + (i < o.runs % n ? 1 : 0), endOnFailure: true },
  );
  await Promise.all(Array.from({ length: n }, (_, i) => client(i)));
  res.seconds = (performance.now() - t0) / 1000;
  return res;
}

/** Methods Node's server parser (llhttp) does not know: it answers 400 and closes. */
const KNOWN = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'PURGE', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'PROPPATCH', 'SEARCH', 'REPORT']);
/** May the connection of this request be closed without an answer (only by Node's parser)? */
function parserRefuses(r: FuzzTarget): boolean {
  return !KNOWN.has(r.method) || r.body !== undefined;
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
