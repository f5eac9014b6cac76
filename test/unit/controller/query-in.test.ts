// '?=' (in) in the in-memory query path (controller/store/query.ts, Redis and the fake stores):
// a set lookup per row, equal to a row-by-value walk under the same coercions as '=' (a numeric
// text meets a number, a boolean 0/1, an object its JSON text), for random mixes of types.
import assert from 'node:assert/strict';
import { matchesFilter } from '../../../controller/store/query.js';
import type { Filter } from '../../../controller/store/types.js';
import { rng } from '../../harness/rng.js';

/**
 * '?=' as "some value is '=' to the stored one": the definition the set lookup must keep. A stored
 * list meets '?=' as its JSON text ('=' on a list asks whether it holds the value).
 */
function inByEquals(r: Record<string, unknown>, f: Filter): boolean {
  const stored = r[f.field];
  const row = Array.isArray(stored) ? { [f.field]: JSON.stringify(stored) } : r;
  return (f.value as unknown[]).some((v) => v !== null && matchesFilter(row, { field: f.field, op: '=', value: v as Filter['value'] }));
}

describe("query '?=' (in)", () => {
  it("matches exactly when some value is '=' to the stored scalar, for mixed types", () => {
    const rand = rng(20261207);
    const pool: unknown[] = [0, 1, 2, -0, 2.5, '2', '2.50', '02', 'x', '', 'abc', true, false, null, '1e1', 10, { a: 1 }, [1], '{"a":1}', '[1]'];
    let hits = 0;
    for (let i = 0; i < 5_000; i++) {
      const stored = rand(10) === 0 ? undefined : pool[rand(pool.length)];
      const values = Array.from({ length: rand(6) }, () => pool[rand(pool.length)]);
      const r: Record<string, unknown> = stored === undefined ? {} : { f: stored };
      const f = { field: 'f', op: '?=', value: values } as Filter;
      const want = inByEquals(r, f);
      if (want) hits++;
      assert.equal(matchesFilter(r, f), want, `stored ${JSON.stringify(stored)} in ${JSON.stringify(values)}`);
    }
    assert.ok(hits > 500 && hits < 4_500, `both outcomes were tried (${hits} matches of 5,000)`);
  });
});
