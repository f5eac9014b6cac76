// Image downloads from real remote servers: sftp from this machine's own sshd with a key (the
// test adds a temporary key to root's authorized_keys and removes it after), and ftp from
// vsftpd (anonymous, and user:password); password logins use a temporary local user.
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as S from '../../../shared/protocol/storage.js';
import { exec, startProcess } from '../../../shared/exec.js';
import { TStackError } from '../../../shared/errors.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { freePort, waitForPort } from '../../harness/ports.js';
import { makeSshKey } from '../../harness/guest.js';
import { startTestAgent, makeQcow2, fileMd5, uuid, type TestAgent } from './helpers.js';

describe('storage: sftp and ftp downloads', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  let agent: TestAgent;
  let store: S.ImageStoreSpec;
  let src: string;
  let img: string;
  let md5: string;
  // a temporary local user for password logins (sftp and ftp)
  const user = `${runId()}dl`;
  const password = `pw-${uuid().slice(0, 8)}`;

  before(async function () {
    agent = await startTestAgent(cleanup);
    src = await tmpDir('remote-src', cleanup);
    store = { type: 'dir', uuid: uuid(), path: await tmpDir('remote-store', cleanup) };
    await agent.call(S.ImageStoreInit, { store });
    img = join(src, 'disk.qcow2');
    await makeQcow2(img, 32, 3);
    chmodSync(img, 0o644);
    md5 = await fileMd5(img);
    await exec('useradd', ['-M', '-d', src, '-s', '/bin/sh', user]);
    cleanup.add(() => exec('userdel', [user]), `userdel ${user}`);
    await exec('chpasswd', [], { stdin: `${user}:${password}\n` });
  });

  describe('sftp from the local sshd', function () {
    let key: string;
    before(async function () {
      await waitForPort('127.0.0.1', 22, 5_000).catch(() => {
        throw new Error('sshd is not listening on 127.0.0.1:22 (scripts/setup starts it)');
      });
      const k = await makeSshKey(join(src, 'ssh'), `${runId()}_sftp`);
      key = readFileSync(k.priv, 'utf8');
      const ak = '/root/.ssh/authorized_keys';
      mkdirSync('/root/.ssh', { recursive: true, mode: 0o700 });
      const existed = existsSync(ak);
      appendFileSync(ak, `${k.pubKey}\n`, { mode: 0o600 });
      cleanup.add(() => {
        // remove only our line; other tests may use the file at the same time
        const rest = readFileSync(ak, 'utf8').split('\n').filter((l) => l.trim() !== k.pubKey.trim());
        if (!existed && rest.every((l) => !l.trim())) unlinkSync(ak);
        else writeFileSync(ak, rest.join('\n'), { mode: 0o600 });
      }, 'remove test key from authorized_keys');
    });

    it('downloads with a private key and verifies md5', async function () {
      const info = await agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `sftp://root@127.0.0.1:22${img}`, sshPrivateKey: key, md5 });
      assert.equal(info.format, 'qcow2');
      assert.equal(info.md5, md5);
      assert.equal(await fileMd5(info.installPath), md5);
    });

    it('downloads with a user name and password', async function () {
      const info = await agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `sftp://${user}:${encodeURIComponent(password)}@127.0.0.1${img}`, md5 });
      assert.equal(await fileMd5(info.installPath), md5);
    });

    it('fails clearly with a wrong password or a missing file', async function () {
      await assert.rejects(
        agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `sftp://root:wrong-${runId()}@127.0.0.1${img}` }),
        (e: TStackError) => e.code === 'DOWNLOAD_FAILED' && /authentication/i.test(e.message),
      );
      await assert.rejects(
        agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `sftp://root@127.0.0.1${img}.missing`, sshPrivateKey: key }),
        (e: TStackError) => e.code === 'DOWNLOAD_FAILED' && /No such file/i.test(e.message),
      );
    });
  });

  describe('ftp from vsftpd', function () {
    let port: number;
    let home: string;

    before(async function () {
      const base = await tmpDir('vsftpd', cleanup);
      chmodSync(base, 0o755);
      const anon = join(base, 'anon');
      home = join(base, 'home');
      const empty = join(base, 'empty');
      for (const d of [anon, home, empty]) mkdirSync(d, { mode: 0o755 });
      copyFileSync(img, join(anon, 'disk.qcow2'));
      copyFileSync(img, join(home, 'disk.qcow2'));
      port = await freePort();
      const pasv = await freePort();
      const conf = join(base, 'vsftpd.conf');
      writeFileSync(
        conf,
        [
          'listen=YES', 'listen_ipv6=NO', 'listen_address=127.0.0.1', `listen_port=${port}`, 'background=NO',
          'anonymous_enable=YES', `anon_root=${anon}`, 'no_anon_password=YES',
          'local_enable=YES', 'write_enable=NO', 'chroot_local_user=NO',
          'pasv_enable=YES', `pasv_min_port=${pasv}`, `pasv_max_port=${pasv}`, 'pasv_address=127.0.0.1',
          `secure_chroot_dir=${empty}`, 'pam_service_name=vsftpd', 'seccomp_sandbox=NO', 'userlist_enable=NO',
          'xferlog_enable=NO', `vsftpd_log_file=${join(base, 'vsftpd.log')}`, 'dual_log_enable=NO',
        ].join('\n') + '\n',
      );
      const p = await startProcess('vsftpd', [conf], { logFile: join(base, 'vsftpd.out') });
      cleanup.add(() => p.stop(2_000), `vsftpd pid ${p.pid}`);
      await waitForPort('127.0.0.1', port, 10_000);
    });

    it('downloads anonymously', async function () {
      const info = await agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `ftp://127.0.0.1:${port}/disk.qcow2`, md5 });
      assert.equal(info.md5, md5);
      assert.equal(await fileMd5(info.installPath), md5);
    });

    it('downloads with user:password', async function () {
      const info = await agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `ftp://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}${home}/disk.qcow2`, md5 });
      assert.equal(await fileMd5(info.installPath), md5);
    });

    it('fails clearly on a wrong password and a missing file, leaving nothing', async function () {
      await assert.rejects(
        agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `ftp://${user}:nope@127.0.0.1:${port}/disk.qcow2` }),
        (e: TStackError) => e.code === 'DOWNLOAD_FAILED' && /530|login/i.test(e.message),
      );
      await assert.rejects(
        agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `ftp://127.0.0.1:${port}/nothing.qcow2` }),
        (e: TStackError) => e.code === 'DOWNLOAD_FAILED' && /550/.test(e.message),
      );
      assert.deepEqual(readdirSync(join(store.type === 'dir' ? store.path : '/nonexistent', 'tmp')), []);
    });
  });
});
