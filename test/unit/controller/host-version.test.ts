// The controller's version (what the tracker checks every agent against, every round) is read
// once per process and tree; only a package build reads it again (issue 19: it stat'ed
// package.json for every host each round).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { readVersion } from '../../../controller/host/package.js';

describe('controller version of a package tree', () => {
  it('is read once; a package.json changed under it shows only when a build reads it afresh', () => {
    const root = mkdtempSync(join(tmpdir(), 'tstack-ver-'));
    try {
      const write = (version: string): void => writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'tstack', version }));
      write('1.2.3');
      assert.equal(readVersion(root), '1.2.3');
      write('1.2.4');
      assert.equal(readVersion(root), '1.2.3', 'the running controller keeps the version it deploys');
      rmSync(join(root, 'package.json'));
      assert.equal(readVersion(root), '1.2.3', 'no file access after the first read');
      write('1.2.5');
      assert.equal(readVersion(root, { fresh: true }), '1.2.5');
      assert.equal(readVersion(relative(process.cwd(), root)), '1.2.5', 'the same tree by a relative path');
      assert.equal(readVersion(root), '1.2.5');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
