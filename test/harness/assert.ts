// Assertion helpers every tier shares: wait for a condition, expect a typed rejection, compare
// with a golden file.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TStackError } from '../../shared/errors.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Poll fn until it returns something other than undefined/false/null (that value is returned),
 * or fail after timeoutMs naming `what` and the last error fn threw.
 */
export async function until<T>(what: string, fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(intervalMs);
  }
}

/** Expect p to reject with a TStackError of this code (or one of these), optionally matching re. */
export async function rejectsWith(p: Promise<unknown>, code: string | string[], re?: RegExp): Promise<TStackError> {
  const codes = Array.isArray(code) ? code : [code];
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TStackError, `expected a TStackError ${codes.join('|')}, got ${String(e)}`);
    assert.ok(codes.includes(e.code), `expected ${codes.join('|')}, got ${e.code}: ${e.message}`);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected a ${codes.join('|')} error, but it succeeded`);
}

/**
 * Compare with the golden file dir/name. A missing file is a failure; UPDATE_GOLDEN=1 writes
 * (creates or accepts an intended change) instead of comparing.
 */
export function golden(dir: string, name: string, actual: string): void {
  const file = join(dir, name);
  if (process.env.UPDATE_GOLDEN === '1') {
    writeFileSync(file, actual);
    return;
  }
  if (!existsSync(file)) assert.fail(`golden file ${file} is missing (run with UPDATE_GOLDEN=1 to create it, then review and commit it)`);
  assert.equal(actual, readFileSync(file, 'utf8'), `output differs from ${file} (UPDATE_GOLDEN=1 to accept an intended change)`);
}
