// The in-memory LIKE matcher (controller/store/like.ts) against SQLite's own LIKE, and its cost
// on the patterns that froze the controller when LIKE was a backtracking regular expression.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { likeMatcher, wildcardCount } from '../../../controller/store/like.js';
import { runQuery } from '../../../controller/store/query.js';
import type { Resource } from '../../../controller/store/types.js';

describe('controller store: LIKE without regular expressions', function () {
  const db = new Database(':memory:');
  const sqliteLike = db.prepare('SELECT ? LIKE ? AS m');
  const like = (value: string, pattern: string): boolean => (sqliteLike.get(value, pattern) as { m: number }).m === 1;
  after(() => db.close());

  it('agrees with SQLite on hand-picked cases', function () {
    const cases: Array<[string, string]> = [
      ['web-1', 'web-%'],
      ['web-1', 'WEB-_'],
      ['web-12', 'web-_'],
      ['', '%'],
      ['', ''],
      ['', '_'],
      ['a', 'a%a'],
      ['aa', 'a%a'],
      ['abcabc', '%b%c'],
      ['abcab', '%b%c'],
      ['Äpfel', 'äpfel'],
      ['Äpfel', '_pfel'],
      ['😀x', '_x'],
      ['x😀', 'x_'],
      ['mississippi', '%iss%ipp%'],
      ['mississippi', 'm%iss%iss%ppi'],
      ['mississippi', 'm%issi%issi%'],
      ['100%', '100%'],
      ['a_b', 'a_b'],
    ];
    for (const [v, p] of cases) assert.equal(likeMatcher(p)(v), like(v, p), `'${v}' LIKE '${p}'`);
  });

  it('agrees with SQLite on generated values and patterns', function () {
    const ch = fc.constantFrom('a', 'b', 'A', 'B', 'é', 'É', 'ß', '😀', '-', '.');
    const pch = fc.oneof(ch, fc.constantFrom('%', '_', '%%'));
    const value = fc.array(ch, { maxLength: 12 }).map((a) => a.join(''));
    const pattern = fc.array(pch, { maxLength: 8 }).map((a) => a.join(''));
    fc.assert(
      fc.property(value, pattern, (v, p) => likeMatcher(p)(v) === like(v, p)),
      { seed: 20, numRuns: 3000 },
    );
  });

  it('stays fast on the patterns that backtrack exponentially as a regex (issue 20 case 1)', function () {
    const text = 'a'.repeat(2000);
    for (const p of ['%'.repeat(200) + 'b', '%a'.repeat(100) + '%b', '_%'.repeat(100) + 'b', '%a_'.repeat(80) + 'b']) {
      // CPU time, not wall time: a busy machine delays the test without making the matcher slower
      const c0 = process.cpuUsage();
      assert.equal(likeMatcher(p)(text), false);
      const used = process.cpuUsage(c0);
      const ms = (used.user + used.system) / 1000;
      assert.ok(ms < 100, `${p.slice(0, 20)}… took ${ms} ms of CPU`);
    }
  });

  it('runQuery fails a query over its CPU budget with a 400 instead of holding the event loop', function () {
    const all: Resource[] = Array.from({ length: 20_000 }, (_, i) => ({ uuid: `u${i}`, kind: 'zone', name: 'a'.repeat(3000), createDate: '', lastOpDate: '', ownerAccountUuid: '', tags: [] }));
    const t0 = performance.now();
    assert.throws(
      () => runQuery(all, { kind: 'zone', filters: [{ field: 'name', op: '~=', value: '%a'.repeat(40) + '%b' }] }, 50),
      (e: { code?: string; details?: { field?: string } }) => e.code === 'INVALID_ARGUMENT' && e.details?.field === 'q',
    );
    assert.ok(performance.now() - t0 < 1000);
  });

  it('counts wildcards', function () {
    assert.equal(wildcardCount('a%b_c%%'), 4);
    assert.equal(wildcardCount('abc'), 0);
  });
});
