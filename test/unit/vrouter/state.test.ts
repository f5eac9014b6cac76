// The agent's own state files replaced without ext4's flush (writeUnflushed: write <file>.new,
// unlink the file, rename): whatever point the writer was killed at, the reader finds the old
// content or the new one, complete — never nothing when either existed, never a torn file.
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileMemory, readReplacedJson, writeUnflushed } from '../../../vrouteragent/state.js';

describe('agent state files replaced without a flush', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tstack-state-'));
    file = join(dir, 'desired.json');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces the content, leaves no .new behind, keeps the mode', () => {
    writeUnflushed(file, '{"v":1}', 0o600);
    writeUnflushed(file, '{"v":2}', 0o600);
    assert.equal(readFileSync(file, 'utf8'), '{"v":2}');
    assert.equal(existsSync(`${file}.new`), false);
    assert.deepEqual(readReplacedJson(file, undefined), { v: 2 });
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('killed between unlink and rename: the complete .new is read and put in place', () => {
    writeFileSync(`${file}.new`, '{"v":2}');
    assert.deepEqual(readReplacedJson(file, undefined), { v: 2 });
    assert.equal(readFileSync(file, 'utf8'), '{"v":2}');
    assert.equal(existsSync(`${file}.new`), false);
  });

  it('killed while writing .new: the old file wins; without one, the torn .new is dropped', () => {
    writeFileSync(file, '{"v":1}');
    writeFileSync(`${file}.new`, '{"v":');
    assert.deepEqual(readReplacedJson(file, undefined), { v: 1 });
    writeUnflushed(file, '{"v":3}', 0o600);
    assert.deepEqual(readReplacedJson(file, undefined), { v: 3 }, 'the next write replaces the torn .new');
    rmSync(file);
    writeFileSync(`${file}.new`, '{"v":');
    assert.equal(readReplacedJson(file, 'none'), 'none');
    assert.equal(existsSync(`${file}.new`), false);
    assert.equal(readReplacedJson(file, 'none'), 'none', 'nothing at all');
  });

  it('FileMemory writes through the given writer, and only what changed', () => {
    const m = new FileMemory();
    assert.equal(m.write(file, 'a', 0o600, writeUnflushed), true);
    assert.equal(m.write(file, 'a', 0o600, writeUnflushed), false);
    assert.equal(m.write(file, 'b', 0o600, writeUnflushed), true);
    assert.equal(readFileSync(file, 'utf8'), 'b');
    assert.equal(existsSync(`${file}.new`), false);
  });
});
