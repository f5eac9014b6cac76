// Deploy the agents to THIS machine over its own sshd (127.0.0.1:22) into a temp install root,
// temp /etc dir and free ports, then talk to them through the controller's AgentClient.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execOut } from '../../../shared/exec.js';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { deployHost, type DeployRequest } from '../../../controller/host/deploy.js';
import { AGENTS, configPath, installedMarker, tokenPath, type AgentName, type HostLayout } from '../../../controller/host/render.js';
import type { BuiltPackage } from '../../../controller/host/package.js';
import { common } from '../../../shared/protocol/index.js';
import { TStackError } from '../../../shared/errors.js';
import { useCleanup } from '../../harness/cleanup.js';
import { freePort } from '../../harness/ports.js';
import { agentPid, alive, authorizedKey, builtTree, bundledPackage, freePorts, killAgents, tempLayout, type TestKey } from './fixture.js';
import { newEd25519KeyPair } from '../../../controller/host/sshkeys.js';

describe('host deploy over SSH to this machine', function () {
  this.timeout(900_000);
  const cleanup = useCleanup();
  const client = new AgentClient();
  let pkg: BuiltPackage;
  let key: TestKey;
  let controllerKey: TestKey;
  let layout: HostLayout;
  let ports: Record<AgentName, number>;
  const hostUuid = randomUUID();

  const request = (o: Partial<DeployRequest> = {}): DeployRequest => ({
    hostUuid,
    managementIp: '127.0.0.1',
    sshPort: 22,
    username: 'root',
    privateKey: key.privateKey,
    ports,
    listenHost: '127.0.0.1',
    controllerUrl: 'http://127.0.0.1:9',
    eventToken: randomBytes(24).toString('base64url'),
    ...o,
  });

  before(async function () {
    pkg = await bundledPackage();
    key = authorizedKey(cleanup, 'deploy');
    controllerKey = { ...authorizedKey(cleanup, 'ctl') };
    layout = await tempLayout(cleanup);
    ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
  });

  it('the built host module loads in plain Node ESM (the daemon does not run under tsx)', async () => {
    const tree = await builtTree();
    const out = await execOut(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(join(tree, 'dist/controller/host/api.js'))}); const t = await import(${JSON.stringify(join(tree, 'dist/controller/host/tracker.js'))}); console.log(typeof m.installHostModule, typeof t.startHostTracker)`], { timeoutMs: 60_000 });
    assert.equal(out, 'function function');
  });

  it('installs the version, starts the three agents, and they answer ping and facts through AgentClient', async () => {
    const steps: string[] = [];
    const r = await deployHost(request({ authorizeKey: controllerKey.publicKey }), { layout, pkg, agentClient: client, progress: (_p, m) => steps.push(m) });
    assert.equal(r.install, 'installed');
    assert.equal(r.serviceManager, existsSync('/run/systemd/system') ? 'systemd' : 'direct');
    assert.equal(r.os.supported, true);
    assert.equal(r.version, pkg.version);
    assert.match(r.sshHostKey, /^SHA256:/);
    assert.ok(['kvm', 'qemu'].includes(r.virtType));
    assert.equal(r.kvmDevice, existsSync('/dev/kvm'));
    assert.ok(r.facts, 'kvmagent host/facts answered');
    assert.ok(r.facts!.memory.total > 0);
    assert.ok(existsSync(installedMarker(layout, pkg.version)));
    assert.ok(steps.some((s) => s.includes('uploading')));
    for (const a of AGENTS) {
      const info = await client.call(common.Ping, { url: `http://127.0.0.1:${ports[a]}`, token: r.agents[a].token }, {});
      assert.equal(info.version, pkg.version);
      assert.equal(info.hostUuid, hostUuid, `${a} was connected to the host uuid`);
      assert.equal(statSync(tokenPath(layout, a)).mode & 0o777, 0o600);
      assert.equal(statSync(configPath(layout, a)).mode & 0o777, 0o600);
      assert.equal(readFileSync(tokenPath(layout, a), 'utf8').trim(), r.agents[a].token);
      const pid = agentPid(layout, a);
      assert.ok(pid && alive(pid), `${a} runs with a pid file`);
    }
    const auth = readFileSync('/root/.ssh/authorized_keys', 'utf8');
    assert.ok(auth.split('\n').filter((l) => l === controllerKey.publicKey).length === 1, 'controller key authorized once');
  });

  it('a redeploy of the same version skips the install, rotates the tokens and restarts the agents', async () => {
    const oldPids = AGENTS.map((a) => agentPid(layout, a));
    const oldToken = readFileSync(tokenPath(layout, 'kvmagent'), 'utf8').trim();
    // log in with the controller's key this time (what a reconnect does)
    const r = await deployHost(request({ privateKey: controllerKey.privateKey, authorizeKey: controllerKey.publicKey }), { layout, pkg, agentClient: client });
    assert.equal(r.install, 'present');
    assert.notEqual(r.agents.kvmagent.token, oldToken);
    for (const [i, a] of AGENTS.entries()) {
      const pid = agentPid(layout, a);
      assert.ok(pid && alive(pid));
      assert.notEqual(pid, oldPids[i], `${a} was restarted`);
      assert.ok(!alive(oldPids[i]!), `old ${a} process is gone`);
    }
    await assert.rejects(client.call(common.Ping, { url: `http://127.0.0.1:${ports.kvmagent}`, token: oldToken }, {}), (e: TStackError) => e.code === 'UNAUTHORIZED');
    const auth = readFileSync('/root/.ssh/authorized_keys', 'utf8');
    assert.equal(auth.split('\n').filter((l) => l === controllerKey.publicKey).length, 1, 'still authorized exactly once');
  });

  it('a wrong password is HOST_AUTH_FAILED', async () => {
    await assert.rejects(
      deployHost(request({ privateKey: undefined, password: 'definitely-not-the-password' }), { layout, pkg, agentClient: client }),
      (e: TStackError) => e.code === 'HOST_AUTH_FAILED' && /wrong user name, password or key/.test(e.message),
    );
  });

  it('a key that is not authorized is HOST_AUTH_FAILED', async () => {
    const stranger = newEd25519KeyPair();
    await assert.rejects(deployHost(request({ privateKey: stranger.private }), { layout, pkg, agentClient: client }), (e: TStackError) => e.code === 'HOST_AUTH_FAILED');
  });

  it('nothing listening on the SSH port is HOST_UNREACHABLE', async () => {
    const port = await freePort();
    await assert.rejects(deployHost(request({ sshPort: port }), { layout, pkg, agentClient: client }), (e: TStackError) => e.code === 'HOST_UNREACHABLE');
  });

  it('a changed host key is refused (HOST_KEY_MISMATCH)', async () => {
    await assert.rejects(
      deployHost(request({ expectedHostKey: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }), { layout, pkg, agentClient: client }),
      (e: TStackError) => e.code === 'HOST_KEY_MISMATCH',
    );
  });
});
