import assert from 'node:assert/strict';
import { PsLayout, StoreLayout, within, checkUuid, checkRoot, SNAP_FILE_RE } from '../../../storageagent/paths.js';
import { TStackError } from '../../../shared/errors.js';

const U = '0b9a8c52-1f7e-4c63-9c0e-6b1a2d3e4f50';
const isInvalid = (e: unknown): boolean => e instanceof TStackError && e.code === 'INVALID_ARGUMENT';

describe('storage unit: contained paths', function () {
  it('joins inside the root and refuses escapes', function () {
    assert.equal(within('/srv/ps', 'volumes', 'a'), '/srv/ps/volumes/a');
    assert.throws(() => within('/srv/ps', '..', 'etc'), isInvalid);
    assert.throws(() => within('/srv/ps', 'volumes/../../etc/passwd'), isInvalid);
    assert.throws(() => within('/srv/ps', '/etc/passwd'), isInvalid);
    assert.throws(() => within('/srv/ps', ''), isInvalid, 'the root itself is not a file inside it');
  });

  it('validates uuids and roots', function () {
    assert.equal(checkUuid('x', U.toUpperCase()), U);
    for (const bad of ['', '../x', `${U}/..`, `${U}\0`, 'a'.repeat(36)]) assert.throws(() => checkUuid('x', bad), isInvalid, bad);
    assert.throws(() => checkRoot('p', 'relative/dir'), isInvalid);
    assert.throws(() => checkRoot('p', '/'), isInvalid);
    assert.throws(() => checkRoot('p', '/srv/../etc'), isInvalid);
    assert.equal(checkRoot('p', '/srv/ps/'), '/srv/ps');
  });

  it('lays out primary storage files', function () {
    const L = new PsLayout('/srv/ps');
    assert.equal(L.imageFileRel(U, 'qcow2'), `imagecache/${U}/${U}.qcow2`);
    assert.equal(L.volumeFileRel(U), `volumes/${U}/${U}.qcow2`);
    assert.equal(L.snapshotFileRel(U, U), `volumes/${U}/snap-${U}.qcow2`);
    assert.ok(SNAP_FILE_RE.test(`snap-${U}.qcow2`));
    assert.ok(!SNAP_FILE_RE.test(`snap-${U}.qcow2.part`));
    assert.throws(() => L.volumeFileRel('../../etc'), isInvalid);
    assert.throws(() => L.imageFileRel(U, '../x'), isInvalid);
    assert.throws(() => L.abs('../outside'), isInvalid);
  });

  it('lays out image store files', function () {
    const L = new StoreLayout('/srv/bs');
    assert.equal(L.imageFile(U, 'iso'), `/srv/bs/images/${U}/${U}.iso`);
    assert.equal(L.meta(U), `/srv/bs/images/${U}/meta.json`);
    assert.throws(() => L.imageDir('x/../../y'), isInvalid);
  });
});
