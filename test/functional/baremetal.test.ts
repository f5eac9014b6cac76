// Bare-metal chassis on the fake cloud (the vrouter fake answers IPMI for the BMCs in
// fc.vrouter.bmcs): create with ZStack's fields, the password sealed at rest and never
// returned; bad input → 400 naming the field; power and boot-device actions store what the BMC
// reports; a wrong password and an unreachable BMC fail with their typed code naming the step,
// and the chassis stays usable once its credentials are fixed; a cluster with chassis is not deleted.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { baremetalModule } from '../../controller/baremetal/module.js';

const field = (r: { body: any }): string | undefined => r.body?.details?.field ?? r.body?.field;

describe('functional: bare-metal chassis and IPMI actions', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let fc: FakeCloud;
  let ch: any;
  const act = (uuid: string, body: unknown) => fc.api.post(`/v1/baremetal-chassis/${uuid}/actions`, body);

  before(async () => {
    fc = await startFakeCloud(cleanup, { modules: [baremetalModule()] });
    fc.vrouter.bmcs.set('192.0.2.10:6230', { password: 'bmc-pw', power: 'off' });
  });

  it('create: 400 naming the field for bad input', async () => {
    const ok = { name: 'm1', clusterUuid: fc.ids.cluster, ipmiAddress: '192.0.2.10', ipmiPort: 6230, ipmiUsername: 'admin', ipmiPassword: 'bmc-pw' };
    const bad = async (over: Record<string, unknown>, f: string): Promise<void> => {
      const r = await fc.api.post('/v1/baremetal-chassis', { ...ok, ...over });
      assert.equal(r.status, 400, `${JSON.stringify(over)} → ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(field(r), f, JSON.stringify(r.body));
    };
    await bad({ ipmiAddress: '-oProxy' }, 'ipmiAddress');
    await bad({ ipmiAddress: 'a b' }, 'ipmiAddress');
    await bad({ ipmiPort: 70000 }, 'ipmiPort');
    await bad({ ipmiUsername: 'x'.repeat(17) }, 'ipmiUsername');
    await bad({ ipmiPassword: 'x'.repeat(21) }, 'ipmiPassword');
    await bad({ ipmiPassword: '' }, 'ipmiPassword');
    await bad({ clusterUuid: fc.ids.zone }, 'clusterUuid');
    await bad({ powerState: 'On' }, 'powerState');
  });

  it('create: the password is sealed at rest and never returned', async () => {
    const r = await fc.api.post('/v1/baremetal-chassis', { name: 'm1', clusterUuid: fc.ids.cluster, ipmiAddress: '192.0.2.10', ipmiPort: 6230, ipmiUsername: 'admin', ipmiPassword: 'bmc-pw' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    ch = r.body;
    assert.equal(ch.zoneUuid, fc.ids.zone);
    assert.equal(ch.powerState, 'Unknown');
    assert.equal(ch.status, 'Available');
    assert.ok(!JSON.stringify(ch).includes('bmc-pw'));
    const listed = await fc.api.get('/v1/baremetal-chassis');
    assert.ok(!JSON.stringify(listed.body).includes('bmc-pw'));
    const stored = await fc.controller.store.get(ch.uuid);
    assert.match(String(stored!._ipmiPassword), /^v1:/);
    assert.ok(!JSON.stringify(stored).includes('bmc-pw'), 'not in the inventory in clear');
  });

  it('power on/status/reset/off and the boot device: what the BMC reports is stored', async () => {
    let r = await act(ch.uuid, { powerStatus: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
    r = await act(ch.uuid, { powerOn: {} });
    assert.equal(r.body.powerState, 'On');
    assert.equal(fc.vrouter.bmcs.get('192.0.2.10:6230')!.power, 'on');
    assert.equal((await act(ch.uuid, { powerReset: {} })).body.powerState, 'On');
    assert.equal((await act(ch.uuid, { powerOff: {} })).body.powerState, 'Off');
    r = await act(ch.uuid, { setBootDevice: { bootDevice: 'pxe' } });
    assert.equal(r.body.bootDevice, 'pxe');
    assert.equal(fc.vrouter.bmcs.get('192.0.2.10:6230')!.bootDevice, 'pxe');
    r = await act(ch.uuid, { setBootDevice: { bootDevice: 'floppy' } });
    assert.equal(r.status, 400);
    const sent = fc.vrouter.callsOf('baremetal/ipmi/power') as Array<{ bmc: { password: string } }>;
    assert.equal(sent.at(-1)!.bmc.password, 'bmc-pw', 'the agent gets the opened password');
  });

  it('wrong credentials and an unreachable BMC: typed errors naming the step; fixed credentials make it usable', async () => {
    let r = await fc.api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPassword: 'wrong-pw' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    r = await act(ch.uuid, { powerOn: {} });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.code, 'IPMI_AUTH_FAILED');
    assert.match(r.body.message, /^powerOn: /);
    await fc.api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPort: 6231 });
    r = await act(ch.uuid, { powerStatus: {} });
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.equal(r.body.code, 'BMC_UNREACHABLE');
    assert.match(r.body.message, /^powerStatus: /);
    await fc.api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPort: 6230, ipmiPassword: 'bmc-pw' });
    r = await act(ch.uuid, { powerStatus: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
  });

  it('PXE server: bad ranges → 400 naming the field; one per zone; applied with the L2 bridge; stop/start; delete', async () => {
    const ok = { name: 'pxe1', zoneUuid: fc.ids.zone, hostUuid: fc.ids.host, l2NetworkUuid: fc.ids.l2, dhcpRangeBegin: '10.88.0.100', dhcpRangeEnd: '10.88.0.150', dhcpRangeNetmask: '255.255.255.0' };
    const bad = async (over: Record<string, unknown>, f: string): Promise<void> => {
      const r = await fc.api.post('/v1/baremetal-pxe-servers', { ...ok, ...over });
      assert.equal(r.status, 400, `${JSON.stringify(over)} → ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(field(r), f, JSON.stringify(r.body));
    };
    await bad({ dhcpRangeBegin: '10.89.0.1', dhcpInterfaceAddress: '10.88.0.1' }, 'dhcpRangeBegin');
    await bad({ dhcpRangeEnd: '10.88.0.50' }, 'dhcpRangeEnd');
    await bad({ dhcpRangeNetmask: '255.0.255.0' }, 'dhcpRangeNetmask');
    await bad({ dhcpInterfaceAddress: '10.88.0.120' }, 'dhcpInterfaceAddress');
    await bad({ hostUuid: fc.ids.zone }, 'hostUuid');
    await bad({ l2NetworkUuid: fc.ids.cluster }, 'l2NetworkUuid');
    let r = await fc.api.post('/v1/baremetal-pxe-servers', ok);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const pxe = r.body;
    assert.equal(pxe.dhcpInterfaceAddress, '10.88.0.1');
    assert.equal(pxe.status, 'Running', JSON.stringify(pxe));
    const spec = fc.vrouter.pxe.get(pxe.uuid)!;
    assert.equal(spec.running, true);
    assert.equal(spec.serverIp, '10.88.0.1');
    assert.ok(spec.bridge.length > 0);
    r = await fc.api.post('/v1/baremetal-pxe-servers', { ...ok, name: 'pxe2' });
    assert.equal(r.status, 409, 'one PXE server per zone');
    r = await fc.api.post(`/v1/baremetal-pxe-servers/${pxe.uuid}/actions`, { stop: {} });
    assert.equal(r.body.state, 'Disabled');
    assert.equal(r.body.status, 'Stopped');
    assert.equal(fc.vrouter.pxe.get(pxe.uuid)!.running, false);
    r = await fc.api.post(`/v1/baremetal-pxe-servers/${pxe.uuid}/actions`, { start: {} });
    assert.equal(r.body.status, 'Running');
    // a failing agent: status Error with the cause, retried by the queue
    for (let i = 0; i < 5; i++) fc.vrouter.failNext('baremetal/pxe/apply', 'NETWORK_ERROR', 'bridge gone');
    r = await fc.api.post(`/v1/baremetal-pxe-servers/${pxe.uuid}/actions`, { stop: {} });
    assert.equal(r.body.status, 'Error');
    assert.match(r.body.lastError, /NETWORK_ERROR: bridge gone/);
    fc.vrouter.clearFaults('baremetal/pxe/apply');
    r = await fc.api.post(`/v1/baremetal-pxe-servers/${pxe.uuid}/actions`, { start: {} });
    assert.equal(r.body.status, 'Running');
    // inspect: the chassis PXE-boots the inspection ramdisk, its report becomes `hardware`, it ends powered off
    await fc.api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPort: 6230, ipmiPassword: 'bmc-pw' });
    let j = await fc.api.post(`/v1/baremetal-chassis/${ch.uuid}/actions?wait=true`, { inspect: { timeoutSec: 1 } });
    assert.equal(j.status, 504, JSON.stringify(j.body));
    assert.equal(j.body.code, 'PXE_TIMEOUT');
    assert.match(j.body.message, /^inspect: no report from the inspection ramdisk within 1 s/);
    let c = (await fc.api.get(`/v1/baremetal-chassis/${ch.uuid}`)).body;
    assert.equal(c.status, 'Available', 'reusable after a PXE timeout');
    assert.equal(c.powerState, 'Off');
    assert.equal(fc.vrouter.pxe.get(pxe.uuid)!.discoveryToken, undefined, 'the token is withdrawn');
    fc.vrouter.inspect.hardware = { cpuNum: 2, memoryBytes: 267_910_144, disks: [{ name: 'vda', size: 2 ** 30 }], nics: [{ name: 'eth0', mac: '52:54:00:21:00:01' }] };
    j = await fc.api.post(`/v1/baremetal-chassis/${ch.uuid}/actions?wait=true`, { inspect: {} });
    assert.equal(j.status, 200, JSON.stringify(j.body));
    c = (await fc.api.get(`/v1/baremetal-chassis/${ch.uuid}`)).body;
    assert.deepEqual({ ...c.hardware, inspectedAt: undefined }, { cpuNum: 2, memorySize: 256 * 2 ** 20, disks: [{ name: 'vda', size: 2 ** 30 }], nics: [{ name: 'eth0', mac: '52:54:00:21:00:01' }], inspectedAt: undefined });
    assert.equal(c.status, 'Available');
    assert.equal(c.powerState, 'Off');
    r = await fc.api.req('DELETE', `/v1/baremetal-pxe-servers/${pxe.uuid}`);
    assert.ok(r.status < 300, JSON.stringify(r.body));
    assert.equal(fc.vrouter.pxe.has(pxe.uuid), false);
  });

  it('a cluster with chassis is not deleted; the chassis is', async () => {
    const r = await fc.api.req('DELETE', `/v1/clusters/${fc.ids.cluster}`);
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal((await fc.api.req('DELETE', `/v1/baremetal-chassis/${ch.uuid}`)).status < 300, true);
  });
});
