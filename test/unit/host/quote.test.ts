// shQuote/shJoin: every word comes back unchanged from a real POSIX sh (dash and bash).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { shJoin, shQuote } from '../../../controller/host/quote.js';

const NASTY = [
  '',
  ' ',
  'plain',
  "it's",
  "''",
  '"double"',
  '$HOME',
  '$(id -u)',
  '`id`',
  'a;b',
  'a && b',
  'a|b',
  'new\nline',
  'tab\there',
  '*',
  '~',
  '-n',
  '--',
  '\\',
  '!x',
  '{a,b}',
  '#comment',
  'ü ✓ 中文',
  "'; rm -rf / #",
];

/** Run `printf '%s\0' <quoted words>` through sh -c and split the NUL-separated words back. */
function roundtrip(shell: string, words: string[]): string[] {
  const out = execFileSync(shell, ['-c', `printf '%s\\0' ${words.map(shQuote).join(' ')}`]);
  const parts = out.toString('utf8').split('\0');
  parts.pop();
  return parts;
}

describe('host/quote', () => {
  it('leaves safe words alone and quotes everything else', () => {
    assert.equal(shQuote('abc/def-1.2_x:y=z'), 'abc/def-1.2_x:y=z');
    assert.equal(shQuote(''), "''");
    assert.equal(shQuote("it's"), `'it'\\''s'`);
    assert.equal(shQuote('$x'), "'$x'");
  });

  for (const shell of ['/bin/sh', '/bin/bash']) {
    it(`${shell}: nasty words survive unchanged`, () => {
      assert.deepEqual(roundtrip(shell, NASTY), NASTY);
    });

    it(`${shell}: random printable and control bytes survive unchanged`, () => {
      const words: string[] = [];
      for (let i = 0; i < 200; i++) {
        const b = randomBytes(1 + (i % 24));
        // no NUL (cannot be in an argv word); keep valid UTF-8 by mapping to 1..127
        words.push(Buffer.from([...b].map((x) => (x % 127) + 1)).toString('latin1'));
      }
      assert.deepEqual(roundtrip(shell, words), words);
    });
  }

  it('refuses NUL and empty commands', () => {
    assert.throws(() => shQuote('a\0b'), /NUL/);
    assert.throws(() => shJoin([]), /empty/);
  });

  it('shJoin keeps argument boundaries', () => {
    assert.equal(shJoin(['sh', '-c', 'echo "$1"', 'sh', 'a b']), `sh -c 'echo "$1"' sh 'a b'`);
  });
});
