// The agent's own state files replaced without ext4's flush (writeUnflushed: write <file>.new,
// unlink the file, rename): whatever point the writer was killed at, the reader finds the old
// content or the new one, complete — never nothing when either existed, never a torn file.
import { strict as assert } from 'node:assert';
import { closeSync, existsSync, lstatSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileMemory, readReplacedJson, writeLinked, writeUnflushed } from '../../../vrouteragent/state.js';

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

// dnsmasq's files swapped in through a symlink (writeLinked): no ext4 flush on replace, and a
// dnsmasq reading at any moment finds a complete file
describe('dnsmasq files swapped in through a symlink', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tstack-linked-'));
    file = join(dir, 'dhcp-hosts');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('each write goes to the generation the link does not name; the replaced one is removed', () => {
    for (let v = 1; v <= 5; v++) {
      writeLinked(file, `v${v}\n`, 0o644);
      assert.equal(readFileSync(file, 'utf8'), `v${v}\n`);
      assert.equal(lstatSync(file).isSymbolicLink(), true);
      const gen = `dhcp-hosts.${(v + 1) % 2}`;
      assert.equal(readlinkSync(file), gen, 'a relative link to the other generation');
      assert.deepEqual(readdirSync(dir).sort(), ['dhcp-hosts', gen], 'no stale generation beside the live one');
    }
    assert.equal(statSync(file).mode & 0o777, 0o644);
  });

  it('a link left by a writer killed before its rename is replaced', () => {
    writeLinked(file, 'a\n', 0o644);
    symlinkSync('elsewhere', `${file}.lnk-${process.pid}`);
    writeLinked(file, 'b\n', 0o644);
    assert.equal(readFileSync(file, 'utf8'), 'b\n');
    assert.deepEqual(readdirSync(dir).sort(), ['dhcp-hosts', 'dhcp-hosts.1']);
  });

  it('a generation left by a writer killed before its rename is replaced by a new inode', () => {
    writeLinked(file, 'a\n', 0o644);
    const left = join(dir, 'dhcp-hosts.1');
    writeFileSync(left, 'torn');
    const fd = openSync(left, 'r');
    try {
      writeLinked(file, 'b\n', 0o644);
      assert.equal(readlinkSync(file), 'dhcp-hosts.1');
      assert.equal(readFileSync(file, 'utf8'), 'b\n');
      const buf = Buffer.alloc(64);
      assert.equal(buf.toString('utf8', 0, readSync(fd, buf, 0, 64, 0)), 'torn', 'written to a new inode, not into the old one');
    } finally {
      closeSync(fd);
    }
    assert.deepEqual(readdirSync(dir).sort(), ['dhcp-hosts', 'dhcp-hosts.1']);
  });

  it('replaces a regular file (an older agent\'s) and a link whose target is gone', () => {
    writeFileSync(file, 'old\n');
    writeLinked(file, 'new\n', 0o644);
    assert.equal(readFileSync(file, 'utf8'), 'new\n');
    rmSync(join(dir, readlinkSync(file)));
    assert.throws(() => readFileSync(file), /ENOENT/);
    writeLinked(file, 'again\n', 0o644);
    assert.equal(readFileSync(file, 'utf8'), 'again\n');
  });

  it('a reader that opened the file before later writes still reads what it opened, whole', () => {
    writeLinked(file, 'first\n', 0o644);
    const fd = openSync(file, 'r');
    try {
      // two more writes: the second reuses the first's generation name, on a new inode
      writeLinked(file, 'second\n', 0o644);
      writeLinked(file, 'third, longer\n', 0o644);
      const buf = Buffer.alloc(64);
      assert.equal(buf.toString('utf8', 0, readSync(fd, buf, 0, 64, 0)), 'first\n');
    } finally {
      closeSync(fd);
    }
    assert.equal(readFileSync(file, 'utf8'), 'third, longer\n');
  });

  it('FileMemory through it: a deleted link is put back once the memory is forgotten (drift repair)', () => {
    const m = new FileMemory();
    assert.equal(m.write(file, 'a\n', 0o644, writeLinked), true);
    assert.equal(m.write(file, 'a\n', 0o644, writeLinked), false);
    rmSync(file);
    m.forget();
    assert.equal(m.write(file, 'a\n', 0o644, writeLinked), true);
    assert.equal(readFileSync(file, 'utf8'), 'a\n');
  });
});
