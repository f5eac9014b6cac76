// Pure parts of host deployment: validation, agent configs, systemd units, os-release, virt type, ssh errors.
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import {
  DEFAULT_LAYOUT,
  checkHost,
  checkLayout,
  checkOs,
  checkPath,
  chooseVirtType,
  nodeMajor,
  parseOsRelease,
  renderAgentConfig,
  renderSystemdUnit,
  sshError,
} from '../../../controller/host/render.js';
import { START_SCRIPT, STOP_SCRIPT, AUTHORIZE_SCRIPT } from '../../../controller/host/deploy.js';

const base = { agent: 'kvmagent' as const, listenHost: '0.0.0.0', port: 7070, layout: DEFAULT_LAYOUT, controllerUrl: 'http://10.0.0.1:8080', hostUuid: '3f1c2d9e-8b7a-4c6d-9e0f-1a2b3c4d5e6f', version: '0.1.0' };

describe('host/render', () => {
  it('agent config: the daemon flags, per-agent data dir and token file', () => {
    const y = renderAgentConfig({ ...base, extra: { libvirtUri: 'qemu:///system' } });
    assert.match(y, /^# tstack 0.1.0 kvmagent on host 3f1c2d9e/);
    assert.deepEqual(parse(y), {
      listen: '0.0.0.0:7070',
      dataDir: '/var/lib/tstack/kvmagent',
      tokenFile: '/etc/tstack/kvmagent.token',
      controllerUrl: 'http://10.0.0.1:8080',
      logLevel: 'info',
      libvirtUri: 'qemu:///system',
    });
  });

  it('agent config refuses bad values and overrides of managed settings', () => {
    assert.throws(() => renderAgentConfig({ ...base, port: 0 }), /port/);
    assert.throws(() => renderAgentConfig({ ...base, listenHost: 'a b' }), /listenHost/);
    assert.throws(() => renderAgentConfig({ ...base, controllerUrl: 'http://x/$(id)' }), /controllerUrl/);
    assert.throws(() => renderAgentConfig({ ...base, extra: { tokenFile: '/tmp/x' } }), /managed/);
    assert.throws(() => renderAgentConfig({ ...base, extra: { 'bad-name': 1 } }), /camelCase/);
    assert.throws(() => renderAgentConfig({ ...base, version: '1.0; rm' }), /version/);
  });

  it('systemd unit runs the version’s main.js with the config', () => {
    const u = renderSystemdUnit({ agent: 'storageagent', nodePath: '/usr/bin/node', layout: DEFAULT_LAYOUT, version: '0.2.0' });
    assert.match(u, /^ExecStart=\/usr\/bin\/node \/opt\/tstack\/0\.2\.0\/dist\/storageagent\/main\.js --config \/etc\/tstack\/storageagent\.yaml$/m);
    assert.match(u, /^Restart=on-failure$/m);
    assert.match(u, /^WantedBy=multi-user.target$/m);
    assert.doesNotMatch(u, /libvirtd/);
    assert.match(renderSystemdUnit({ agent: 'kvmagent', nodePath: '/usr/bin/node', layout: DEFAULT_LAYOUT, version: '0.2.0' }), /After=.*libvirtd.service/);
  });

  it('paths: absolute, no shell/unit-special characters, no ..', () => {
    assert.equal(checkPath('p', '/opt/tstack/'), '/opt/tstack');
    for (const bad of ['relative', '/a b', '/a/../b', '/a;b', '/a$b', "/a'b", '/a\nb']) assert.throws(() => checkPath('p', bad), /absolute path/, bad);
    assert.throws(() => checkLayout({ ...DEFAULT_LAYOUT, etcDir: '/etc/ts stack' }), /layout.etcDir/);
  });

  it('management address: IPv4 or host name', () => {
    for (const ok of ['10.0.0.5', 'host-1.example.com', 'localhost']) assert.equal(checkHost(ok), ok);
    for (const bad of ['10.0.0.256', '-rf', 'a b', 'x;y', '', 'a..b']) assert.throws(() => checkHost(bad), /managementIp/, bad);
  });

  it('os-release: Debian 12 is supported, others are not', () => {
    const deb = parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n');
    assert.deepEqual(checkOs(deb), { id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)', supported: true });
    assert.equal(checkOs(parseOsRelease('ID=ubuntu\nVERSION_ID="22.04"\n')).supported, false);
    assert.equal(checkOs(parseOsRelease('ID=debian\nVERSION_ID="11"\n')).supported, false);
    assert.equal(checkOs({}).supported, false);
  });

  it('virt type: kvm only with /dev/kvm, else qemu with a note; qemu when asked', () => {
    assert.deepEqual(chooseVirtType('kvm', true), { virtType: 'kvm' });
    assert.equal(chooseVirtType('kvm', false).virtType, 'qemu');
    assert.match(chooseVirtType(undefined, false).note!, /\/dev\/kvm/);
    assert.deepEqual(chooseVirtType('qemu', true), { virtType: 'qemu' });
  });

  it('node versions', () => {
    assert.equal(nodeMajor('v20.11.1'), 20);
    assert.equal(nodeMajor('v18.19.0\n'), 18);
    assert.ok(Number.isNaN(nodeMajor('')));
  });

  it('ssh errors become typed host errors', () => {
    assert.equal(sshError(Object.assign(new Error('All configured authentication methods failed'), { level: 'client-authentication' }), 'root@h:22').code, 'HOST_AUTH_FAILED');
    assert.equal(sshError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'root@h:22').code, 'HOST_UNREACHABLE');
    assert.equal(sshError(Object.assign(new Error('Timed out while waiting for handshake'), { level: 'client-timeout' }), 'root@h:22').code, 'HOST_UNREACHABLE');
    assert.equal(sshError(new Error('something else'), 'root@h:22').code, 'HOST_SSH_ERROR');
  });

  it('the remote shell snippets are constants that only use positional parameters', () => {
    // only positional parameters, the scripts' own variables, $! and $HOME: no value is spliced in
    const allowed = new Set(['log', 'pidf', 'pid', 'pat', 'i', 'f', 'HOME']);
    for (const s of [START_SCRIPT, STOP_SCRIPT, AUTHORIZE_SCRIPT]) {
      for (const m of s.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) assert.ok(allowed.has(m[1]!), `unexpected variable $${m[1]} in ${s}`);
    }
  });
});
