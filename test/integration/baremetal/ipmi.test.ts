// IPMI through a real vrouteragent process, real ipmitool and a real BMC (ipmi_sim) driving a
// real QEMU (TCG) machine (test/harness/baremetal.ts): power on starts the machine and the BMC
// reports on, reset keeps it on, off stops it; the boot device reaches the BMC; a wrong
// password and an unreachable BMC fail with typed errors naming the step, in seconds, and
// leave the machine as it was.
import { strict as assert } from 'node:assert';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { baremetal as BM } from '../../../shared/protocol/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { startAgentProcess, type AgentProcess } from '../../harness/agents.js';
import { startSimulatedMachine, type SimulatedMachine } from '../../harness/baremetal.js';
import { freePort } from '../../harness/ports.js';
import { rejectsWith, until } from '../../harness/assert.js';

describe('integration: IPMI through the vrouteragent against ipmi_sim + QEMU', function () {
  this.timeout(90_000);
  const cleanup = useCleanup();
  const client = new AgentClient();
  let agent: AgentProcess;
  let m: SimulatedMachine;
  const bmc = (over: Partial<{ password: string; port: number }> = {}) => ({ address: m.address, port: over.port ?? m.port, username: m.username, password: over.password ?? m.password });
  const power = (op: BM.PowerOp, over = {}) => client.call(BM.IpmiPower, { url: agent.url, token: agent.token }, { bmc: bmc(over), op });

  before(async () => {
    [agent, m] = await Promise.all([startAgentProcess('vrouteragent', { cleanup, args: ['--watchdog-ms', '0', '--metrics-interval-ms', '0'] }), startSimulatedMachine(cleanup)]);
  });

  it('power status/on/reset/off: what the BMC reports follows the QEMU machine', async () => {
    assert.deepEqual(await power('status'), { powerState: 'off' });
    assert.equal(m.poweredOn(), false);
    assert.deepEqual(await power('on'), { powerState: 'on' });
    assert.ok(m.poweredOn(), 'the QEMU machine runs');
    const before = await m.whenRunning();
    assert.match(before, /-accel tcg/);
    assert.deepEqual(await power('reset'), { powerState: 'on' });
    assert.equal(await m.whenRunning(), before);
    assert.deepEqual(await power('off'), { powerState: 'off' });
    await until('QEMU gone', () => !m.poweredOn(), 5_000);
    assert.deepEqual(await power('status'), { powerState: 'off' });
  });

  it('setBootDevice pxe/disk reaches the BMC and decides how the machine boots', async () => {
    await client.call(BM.IpmiBootDevice, { url: agent.url, token: agent.token }, { bmc: bmc(), device: 'pxe' });
    assert.equal(m.bootDevice(), 'pxe');
    await power('on');
    assert.match(await m.whenRunning(), /-boot order=n/);
    await power('off');
    await client.call(BM.IpmiBootDevice, { url: agent.url, token: agent.token }, { bmc: bmc(), device: 'disk' });
    assert.notEqual(m.bootDevice(), 'pxe');
  });

  it('a wrong password: IPMI_AUTH_FAILED naming the step; the machine stays off', async () => {
    const t0 = Date.now();
    const e = await rejectsWith(power('on', { password: 'wrong-pass' }), 'IPMI_AUTH_FAILED', /^powerOn: .*refused user 'admin'/);
    assert.equal(e.details?.step, 'powerOn');
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal(m.poweredOn(), false);
  });

  it('an unreachable BMC: BMC_UNREACHABLE naming the step, within the retry budget', async () => {
    const dead = await freePort();
    const t0 = Date.now();
    const e = await rejectsWith(power('status', { port: dead }), 'BMC_UNREACHABLE', /^powerStatus: no answer from the BMC at 127\.0\.0\.1:\d+/);
    assert.equal(e.details?.step, 'powerStatus');
    assert.ok(Date.now() - t0 < 15_000, `${Date.now() - t0} ms`);
  });

  it('bad input never reaches ipmitool: a BMC address starting with "-" is refused', async () => {
    await rejectsWith(client.call(BM.IpmiPower, { url: agent.url, token: agent.token }, { bmc: { ...bmc(), address: '-oProxyCommand=x' }, op: 'status' }), 'INVALID_ARGUMENT');
  });
});
