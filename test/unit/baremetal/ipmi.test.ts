// The pure parts of bare metal: ipmitool's arguments (no password, lanplus -C 3), its answers
// and failures classified into typed errors naming the step, and the controller's secret box.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classifyIpmiFailure, ipmitoolArgs, parsePowerState } from '../../../vrouteragent/baremetal/ipmi.js';
import { SecretBox } from '../../../controller/auth/secret-box.js';

const BMC = { address: '10.0.0.9', port: 623, username: 'admin', password: 's3cret-pw' };

describe('unit: bare-metal IPMI helpers', () => {
  it('ipmitool arguments: lanplus, cipher suite 3, password from the environment only', () => {
    const a = ipmitoolArgs(BMC, ['chassis', 'power', 'on']);
    assert.deepEqual(a.slice(0, 4), ['-I', 'lanplus', '-C', '3']);
    assert.ok(a.includes('-E'));
    assert.ok(!a.some((x) => x.includes('s3cret')), 'the password never appears in argv');
    assert.deepEqual(a.slice(-3), ['chassis', 'power', 'on']);
  });

  it('power state from the status line', () => {
    assert.equal(parsePowerState('Chassis Power is on\n'), 'on');
    assert.equal(parsePowerState('Chassis Power is off'), 'off');
    assert.equal(parsePowerState('garbage'), undefined);
  });

  it('failures: auth, unreachable, other — each naming the step', () => {
    const auth = classifyIpmiFailure('powerOn', BMC, 'Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session');
    assert.equal(auth.code, 'IPMI_AUTH_FAILED');
    assert.match(auth.message, /^powerOn: .*10\.0\.0\.9:623.*'admin'/);
    assert.equal(classifyIpmiFailure('powerOn', BMC, 'RAKP 2 message indicates an error : unauthorized name').code, 'IPMI_AUTH_FAILED');
    const dead = classifyIpmiFailure('powerStatus', BMC, 'Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session');
    assert.equal(dead.code, 'BMC_UNREACHABLE');
    assert.equal(dead.details?.step, 'powerStatus');
    const other = classifyIpmiFailure('setBootDevice', BMC, 'Loading IANA PEN Registry...\nSet Chassis Boot Parameter 5 failed: Invalid data field in request');
    assert.equal(other.code, 'IPMI_ERROR');
    assert.match(other.message, /^setBootDevice: .*Boot Parameter 5 failed/);
  });
});

describe('unit: the controller secret box', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'i21-box-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('seals with a 0600 key file made once; opens only with the same key and resource', () => {
    const box = SecretBox.forDataDir(dir);
    const key = readFileSync(join(dir, 'secret.key'), 'utf8');
    assert.equal(statSync(join(dir, 'secret.key')).mode & 0o777, 0o600);
    const s = box.seal('pw-1', 'uuid-a');
    assert.ok(!s.includes('pw-1'));
    assert.notEqual(box.seal('pw-1', 'uuid-a'), s, 'a fresh IV each time');
    assert.equal(SecretBox.forDataDir(dir).open(s, 'uuid-a'), 'pw-1', 'the key file is reused');
    assert.equal(readFileSync(join(dir, 'secret.key'), 'utf8'), key);
    assert.throws(() => box.open(s, 'uuid-b'), /does not open/);
    const other = mkdtempSync(join(tmpdir(), 'i21-box2-'));
    try {
      assert.throws(() => SecretBox.forDataDir(other).open(s, 'uuid-a'), /does not open/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
