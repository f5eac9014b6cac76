// Non-root SSH users (manual §6.3: "普通用户要求拥有sudo权限"): a temp user on this machine
// without sudo → HOST_NOT_PRIVILEGED; with NOPASSWD sudo → deploys through sudo -n; with
// password sudo and password login → deploys through sudo -S. The user and its sudoers file are
// removed afterwards.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { deployHost, type DeployRequest } from '../../../controller/host/deploy.js';
import type { BuiltPackage } from '../../../controller/host/package.js';
import type { AgentName, HostLayout } from '../../../controller/host/render.js';
import { exec, execOut } from '../../../shared/exec.js';
import type { TStackError } from '../../../shared/errors.js';
import { common } from '../../../shared/protocol/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId } from '../../harness/tmp.js';
import { bundledPackage, freePorts, killAgents, tempLayout } from './fixture.js';
import { newEd25519KeyPair } from '../../../controller/host/sshkeys.js';

describe('host deploy as a non-root user', function () {
  this.timeout(900_000);
  const cleanup = useCleanup();
  const user = `${runId()}u`;
  const password = randomBytes(12).toString('base64url');
  const sudoers = `/etc/sudoers.d/${user}`;
  const key = newEd25519KeyPair(`tstack-test-${runId()}-user`);
  const client = new AgentClient();
  let pkg: BuiltPackage;
  let layout: HostLayout;
  let ports: Record<AgentName, number>;

  const request = (o: Partial<DeployRequest>): DeployRequest => ({
    hostUuid: randomUUID(),
    managementIp: '127.0.0.1',
    sshPort: 22,
    username: user,
    ports,
    listenHost: '127.0.0.1',
    controllerUrl: 'http://127.0.0.1:9',
    eventToken: randomBytes(24).toString('base64url'),
    ...o,
  });

  before(async () => {
    pkg = await bundledPackage();
    layout = await tempLayout(cleanup);
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    ports = await freePorts();
    await exec('useradd', ['-m', '-s', '/bin/sh', user]);
    cleanup.add(async () => {
      rmSync(sudoers, { force: true });
      await exec('userdel', ['-r', user], { okCodes: [0, 6, 12] });
    }, `userdel ${user}`);
    await exec('chpasswd', [], { stdin: `${user}:${password}\n` });
    const home = await execOut('sh', ['-c', 'getent passwd "$1" | cut -d: -f6', 'sh', user]);
    const uid = Number(await execOut('id', ['-u', user]));
    const gid = Number(await execOut('id', ['-g', user]));
    mkdirSync(`${home}/.ssh`, { mode: 0o700 });
    writeFileSync(`${home}/.ssh/authorized_keys`, key.public.trim() + '\n', { mode: 0o600 });
    chownSync(`${home}/.ssh`, uid, gid);
    chownSync(`${home}/.ssh/authorized_keys`, uid, gid);
  });

  it('without sudo: HOST_NOT_PRIVILEGED, saying how to fix it', async () => {
    await assert.rejects(deployHost(request({ privateKey: key.private }), { layout, pkg, agentClient: client }), (e: TStackError) => e.code === 'HOST_NOT_PRIVILEGED' && e.message.includes('NOPASSWD'));
  });

  it('with NOPASSWD sudo: deploys through sudo', async () => {
    writeFileSync(sudoers, `${user} ALL=(ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
    chmodSync(sudoers, 0o440);
    const r = await deployHost(request({ privateKey: key.private }), { layout, pkg, agentClient: client });
    assert.equal(r.privilege, 'sudo');
    assert.equal(r.install, 'installed');
    const info = await client.call(common.Ping, { url: r.agents.kvmagent.url, token: r.agents.kvmagent.token }, {});
    assert.equal(info.version, pkg.version);
  });

  it('with password sudo and password login: deploys through sudo -S', async () => {
    writeFileSync(sudoers, `${user} ALL=(ALL) ALL\n`, { mode: 0o440 });
    const r = await deployHost(request({ password }), { layout, pkg, agentClient: client });
    assert.equal(r.privilege, 'sudo-password');
    assert.equal(r.install, 'present');
    const info = await client.call(common.Ping, { url: r.agents.storageagent.url, token: r.agents.storageagent.token }, {});
    assert.equal(info.version, pkg.version);
  });
});
