// A PXE server run by a real vrouteragent (namespace on a test bridge, dnsmasq DHCP + TFTP +
// RA, the agent's HTTP endpoint) and a simulated machine (ipmi_sim + QEMU TCG, NIC on the
// bridge): set to PXE through the BMC and powered on, the machine's iPXE gets an address from
// the server and asks for its own boot script by MAC; stop removes the namespace and dnsmasq,
// start brings them back; bad specs are refused naming the field.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { baremetal as BM } from '../../../shared/protocol/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { startAgentProcess, type AgentProcess } from '../../harness/agents.js';
import { startSimulatedMachine, type SimulatedMachine } from '../../harness/baremetal.js';
import { createBridge, createTap, deleteNetns, netnsExists } from '../../harness/net.js';
import { rejectsWith, until } from '../../harness/assert.js';
import { runId } from '../../harness/tmp.js';

const MAC = '52:54:00:21:00:01';

describe('integration: PXE server (vrouteragent) boots a simulated machine into iPXE', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  const client = new AgentClient();
  let agent: AgentProcess;
  let m: SimulatedMachine;
  let spec: BM.PxeServerSpecT;
  const ep = () => ({ url: agent.url, token: agent.token });
  const prefix = `${runId()}b`;
  const ns = (uuid: string) => `${prefix}-p-${uuid.replace(/-/g, '')}`;

  before(async () => {
    const bridge = await createBridge(`${runId()}pxb`, cleanup);
    const tap = await createTap(`${runId()}pxt`, bridge, cleanup);
    spec = { pxeServerUuid: randomUUID(), bridge, serverIp: '10.88.0.1', dhcpRangeBegin: '10.88.0.100', dhcpRangeEnd: '10.88.0.150', dhcpRangeNetmask: '255.255.255.0', httpPort: 8090, running: true, machines: [] };
    cleanup.add(() => deleteNetns(ns(spec.pxeServerUuid)), 'PXE namespace');
    [agent, m] = await Promise.all([
      startAgentProcess('vrouteragent', { cleanup, args: ['--watchdog-ms', '0', '--metrics-interval-ms', '0', '--name-prefix', prefix, '--if-prefix', prefix] }),
      startSimulatedMachine(cleanup, { qemuArgs: ['-accel', 'tcg', '-machine', 'pc', '-m', '256', '-smp', '1', '-nodefaults', '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n0,mac=${MAC}`] }),
    ]);
  });

  it('bad specs are refused naming the field; nothing is made', async () => {
    const e = await rejectsWith(client.call(BM.PxeApply, ep(), { server: { ...spec, serverIp: '10.88.0.120' } }), 'INVALID_ARGUMENT');
    assert.equal(e.details?.field, 'server.serverIp');
    await rejectsWith(client.call(BM.PxeApply, ep(), { server: { ...spec, bridge: 'br;rm -rf' } }), 'INVALID_ARGUMENT');
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), false);
  });

  it('a machine set to PXE through its BMC boots iPXE from the server and asks for its script', async () => {
    const r = await client.call(BM.PxeApply, ep(), { server: spec });
    assert.ok(r.state.running, JSON.stringify(r));
    assert.ok(r.state.dnsmasqPid);
    const bmc = { address: m.address, port: m.port, username: m.username, password: m.password };
    await client.call(BM.IpmiBootDevice, ep(), { bmc, device: 'pxe' });
    const t0 = Date.now();
    await client.call(BM.IpmiPower, ep(), { bmc, op: 'on' });
    const seen = await until(
      'the machine fetched its boot script',
      async () => (await client.call(BM.PxeStatus, ep(), { pxeServerUuid: spec.pxeServerUuid })).state?.recentBoots.find((b) => b.mac === MAC),
      60_000,
      500,
    );
    assert.equal(seen.boot, 'local', 'an unknown machine is sent to its next boot device');
    console.log(`      power on → iPXE asked for its script: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await client.call(BM.IpmiPower, ep(), { bmc, op: 'off' });
  });

  it('stop removes namespace and dnsmasq, start brings them back, delete removes everything', async () => {
    let r = await client.call(BM.PxeApply, ep(), { server: { ...spec, running: false } });
    assert.equal(r.state.running, false);
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), false);
    r = await client.call(BM.PxeApply, ep(), { server: spec });
    assert.equal(r.state.running, true);
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), true);
    assert.deepEqual(await client.call(BM.PxeDelete, ep(), { pxeServerUuid: spec.pxeServerUuid }), { deleted: true });
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), false);
    assert.deepEqual(await client.call(BM.PxeStatus, ep(), { pxeServerUuid: spec.pxeServerUuid }), {});
  });
});
