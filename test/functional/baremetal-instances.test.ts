// Bare-metal instances on the fake cloud (the vrouter fake answers IPMI for fc.vrouter.bmcs and
// its deploy ramdisk reports fc.vrouter.deploy.result): provisioning runs the baremetal-provision
// flow (claim, prepare, pxe, power-on, deploy-wait, boot-disk, finish) and ends Running on a
// Provisioned chassis booting from disk with PXE off; refusals are 4xx naming the field; a fault
// at each step, a failing ramdisk, a PXE timeout, a wrong BMC password and a killed controller
// all end with the chassis Available, powered off, boot device PXE and no PXE instructions;
// start/stop/reboot follow the BMC; reinstall (and a failed one → Error); delete wipes the disk
// through the ramdisk and frees the chassis; two machines provisioned at once.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { until } from '../harness/assert.js';
import { baremetalModule } from '../../controller/baremetal/module.js';

const field = (r: { body: any }): string | undefined => r.body?.details?.field ?? r.body?.field;
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm0n2pQ0Y7p8bKx6Jb5Qn7c0m1W9vS2b2u8ZqkQeX7y test@bm';
const STEPS = ['claim', 'prepare', 'pxe', 'power-on', 'deploy-wait', 'boot-disk'];

describe('functional: bare-metal instances (provisioning flow, rollback, power, reinstall, delete)', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  let fc: FakeCloud;
  let pxe: any;
  const chassis: any[] = [];
  const macs = ['52:54:00:21:b0:01', '52:54:00:21:b0:02', '52:54:00:21:b0:03'];
  const bmcKey = (i: number) => `192.0.2.${30 + i}:623`;
  const get = async (kind: string, uuid: string) => (await fc.api.get(`/v1/${kind}/${uuid}`)).body;
  const create = (body: Record<string, unknown>) => fc.api.post('/v1/baremetal-instances?wait=true', { imageUuid: fc.ids.image, sshKey: KEY, ...body });
  const pxeMachine = (mac: string) => fc.vrouter.pxe.get(pxe.uuid)!.machines.find((m) => m.mac === mac);

  /** The chassis is back at rest: free, powered off, boot device PXE, nothing on the PXE server. */
  const atRest = async (i: number, what: string): Promise<void> => {
    const ch = await get('baremetal-chassis', chassis[i].uuid);
    assert.equal(ch.status, 'Available', `${what}: ${JSON.stringify(ch)}`);
    assert.equal(ch.instanceUuid, undefined, what);
    assert.equal(fc.vrouter.bmcs.get(bmcKey(i))!.power, 'off', `${what}: powered off`);
    assert.notEqual(fc.vrouter.bmcs.get(bmcKey(i))!.bootDevice, 'disk', `${what}: PXE-ready`);
    assert.equal(pxeMachine(macs[i]!), undefined, `${what}: no PXE instructions left`);
    assert.equal((await fc.api.get('/v1/baremetal-instances')).body.inventories?.filter((x: any) => x.chassisUuid === chassis[i].uuid).length ?? 0, 0, `${what}: no instance left`);
    assert.equal(fc.vrouter.deploy.prepared.size, 0, `${what}: config drives removed`);
  };

  before(async () => {
    fc = await startFakeCloud(cleanup, { modules: [baremetalModule()] });
    const r = await fc.api.post('/v1/baremetal-pxe-servers', { name: 'pxe', zoneUuid: fc.ids.zone, hostUuid: fc.ids.host, l2NetworkUuid: fc.ids.l2, dhcpRangeBegin: '10.88.0.100', dhcpRangeEnd: '10.88.0.150', dhcpRangeNetmask: '255.255.255.0' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    pxe = r.body;
    for (const i of [0, 1, 2]) {
      fc.vrouter.bmcs.set(bmcKey(i), { password: 'bmc-pw', power: 'off' });
      const c = await fc.api.post('/v1/baremetal-chassis', { name: `ch${i}`, clusterUuid: fc.ids.cluster, ipmiAddress: `192.0.2.${30 + i}`, ipmiUsername: 'admin', ipmiPassword: 'bmc-pw' });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      chassis.push(c.body);
      if (i < 2) await fc.controller.store.update(c.body.uuid, { hardware: { cpuNum: 1, memorySize: 256 << 20, disks: [{ name: 'vda', size: 2 ** 30 }], nics: [{ name: 'eth0', mac: macs[i] }] } });
    }
  });

  it('refusals: bad sshKey / unknown image / unknown chassis → 400 naming the field; an uninspected chassis → 409', async () => {
    let r = await create({ name: 'bad', chassisUuid: chassis[0].uuid, sshKey: 'not a key' });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(field(r), 'sshKey');
    r = await create({ name: 'bad', chassisUuid: chassis[0].uuid, imageUuid: fc.ids.zone });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(field(r), 'imageUuid');
    r = await create({ name: 'bad', chassisUuid: fc.ids.cluster });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(field(r), 'chassisUuid');
    r = await create({ name: 'bad', chassisUuid: chassis[2].uuid });
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.match(r.body.message, /inspect/);
    r = await create({ name: 'bad', chassisUuid: chassis[0].uuid, rootPassword: 'x'.repeat(129) });
    assert.equal(field(r), 'rootPassword');
    assert.equal(fc.vrouter.callsOf('baremetal/deploy/prepare').length, 0, 'nothing reached the agent');
  });

  it('a fault at each step rolls back to a powered-off, PXE-ready, free chassis; the error names the step', async () => {
    for (const s of STEPS) {
      process.env.TSTACK_FAULT_INJECT = `baremetal-provision:${s}`;
      try {
        const r = await create({ name: `fault-${s}`, chassisUuid: chassis[0].uuid });
        assert.ok(r.status >= 400, `${s}: ${r.status} ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'INJECTED_FAULT', JSON.stringify(r.body));
        assert.equal(r.body.details?.step, s, JSON.stringify(r.body));
      } finally {
        delete process.env.TSTACK_FAULT_INJECT;
      }
      await atRest(0, `fault at ${s}`);
    }
  });

  it('the ramdisk fails (DEPLOY_FAILED with its message, CHECKSUM_MISMATCH), a PXE timeout, a wrong BMC password: each names the step and rolls back', async () => {
    fc.vrouter.deploy.result = { ok: false, step: 'image', message: 'the download of the image failed' };
    let r = await create({ name: 'df', chassisUuid: chassis[0].uuid });
    assert.equal(r.body.code, 'DEPLOY_FAILED', JSON.stringify(r.body));
    assert.match(r.body.message, /^deploy-wait: the deploy ramdisk failed at image: the download of the image failed/);
    await atRest(0, 'DEPLOY_FAILED');
    fc.vrouter.deploy.result = { ok: false, step: 'checksum', message: 'checksum mismatch: the image written has sha256 …' };
    r = await create({ name: 'cs', chassisUuid: chassis[0].uuid });
    assert.equal(r.body.code, 'CHECKSUM_MISMATCH', JSON.stringify(r.body));
    await atRest(0, 'CHECKSUM_MISMATCH');
    fc.vrouter.deploy.result = 'silent';
    r = await create({ name: 'pt', chassisUuid: chassis[0].uuid, timeoutSec: 1 });
    assert.equal(r.status, 504, JSON.stringify(r.body));
    assert.equal(r.body.code, 'PXE_TIMEOUT');
    assert.match(r.body.message, /^deploy-wait: no report from the deploy ramdisk within 1 s \(the machine fetched its deploy boot script/);
    await atRest(0, 'PXE_TIMEOUT');
    fc.vrouter.deploy.result = { ok: true };
    fc.vrouter.bmcs.get(bmcKey(0))!.password = 'changed';
    r = await create({ name: 'auth', chassisUuid: chassis[0].uuid });
    assert.equal(r.body.code, 'IPMI_AUTH_FAILED', JSON.stringify(r.body));
    assert.match(r.body.message, /^power-on: setBootDevice: /);
    fc.vrouter.bmcs.get(bmcKey(0))!.password = 'bmc-pw';
    await fc.api.post(`/v1/baremetal-chassis/${chassis[0].uuid}/actions`, { powerOff: {} });
    await atRest(0, 'IPMI_AUTH_FAILED');
  });

  it('a controller killed while the ramdisk works: the restarted one rolls the provisioning back', async () => {
    fc.vrouter.deploy.result = 'silent';
    const r = await fc.api.post('/v1/baremetal-instances', { name: 'crash', chassisUuid: chassis[0].uuid, imageUuid: fc.ids.image });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    await until('the machine boots the deploy ramdisk', () => pxeMachine(macs[0]!)?.boot === 'deploy' && fc.vrouter.bmcs.get(bmcKey(0))!.power === 'on', 20_000, 100);
    await fc.crashController([baremetalModule()]);
    fc.vrouter.deploy.result = { ok: true };
    await until('rolled back by the new controller', async () => (await get('baremetal-chassis', chassis[0].uuid)).status === 'Available', 20_000, 200);
    await atRest(0, 'controller killed');
  });

  let inst: any;
  it('provisioning: Running with the static address, the machine boots from disk with PXE off; chassis in use → 409', async () => {
    const r = await create({ name: 'BM One', chassisUuid: chassis[0].uuid, rootPassword: 'Root-pw-21', userData: '#!/bin/sh\necho hi\n' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    inst = (await fc.api.get('/v1/baremetal-instances')).body.inventories.find((x: any) => x.name === 'BM One');
    assert.equal(inst.state, 'Running');
    assert.equal(inst.ip, '10.88.0.2', 'the first free address outside the DHCP range');
    assert.equal(inst.hostname, 'bm-one');
    assert.equal(inst.macAddress, macs[0]);
    assert.deepEqual(Object.keys(inst.phases), ['claim', 'prepare', 'pxe', 'power-on', 'deploy-wait', 'boot-disk']);
    assert.ok(!JSON.stringify(inst).includes('Root-pw-21'), 'the root password is never returned');
    assert.ok(!JSON.stringify(await fc.controller.store.get(inst.uuid)).includes('Root-pw-21'), 'nor stored in clear');
    const prep = fc.vrouter.callsOf('baremetal/deploy/prepare').at(-1) as any;
    assert.deepEqual(prep.configDrive, { hostname: 'bm-one', sshKeys: [KEY], userData: '#!/bin/sh\necho hi\n', rootPassword: 'Root-pw-21', network: { mac: macs[0], ip: '10.88.0.2', netmask: '255.255.255.0' } });
    assert.equal(prep.image.imageUuid, fc.ids.image);
    const ch = await get('baremetal-chassis', chassis[0].uuid);
    assert.deepEqual([ch.status, ch.powerState, ch.bootDevice, ch.instanceUuid], ['Provisioned', 'On', 'disk', inst.uuid]);
    assert.equal(pxeMachine(macs[0]!)?.boot, 'local', 'PXE off: iPXE exits to the disk');
    assert.equal(fc.vrouter.deploy.prepared.size, 0, 'the config drive is not kept');
    const again = await create({ name: 'again', chassisUuid: chassis[0].uuid });
    assert.equal(again.status, 409, JSON.stringify(again.body));
    assert.equal(field(again), 'chassisUuid');
    assert.equal((await fc.api.req('DELETE', `/v1/baremetal-chassis/${chassis[0].uuid}`)).status, 409, 'a chassis with an instance is not deleted');
    assert.equal((await fc.api.req('DELETE', `/v1/baremetal-pxe-servers/${pxe.uuid}`)).status, 409, 'nor the PXE server that provisioned it');
  });

  it('stop / start / reboot through IPMI: the state follows what the BMC reports', async () => {
    const act = (a: string) => fc.api.post(`/v1/baremetal-instances/${inst.uuid}/actions`, { [a]: {} });
    let r = await act('stop');
    assert.equal(r.body.state, 'Stopped', JSON.stringify(r.body));
    assert.equal(fc.vrouter.bmcs.get(bmcKey(0))!.power, 'off');
    r = await act('start');
    assert.equal(r.body.state, 'Running');
    assert.equal(fc.vrouter.bmcs.get(bmcKey(0))!.power, 'on');
    r = await act('reboot');
    assert.equal(r.body.state, 'Running');
    fc.vrouter.bmcs.get(bmcKey(0))!.password = 'changed';
    r = await act('stop');
    assert.equal(r.body.code, 'IPMI_AUTH_FAILED');
    assert.match(r.body.message, /^stop: powerOff: /);
    fc.vrouter.bmcs.get(bmcKey(0))!.password = 'bmc-pw';
  });

  it('reinstall: a fresh system (prepare + deploy again); a failed one leaves the instance in Error on a powered-off, PXE-ready chassis', async () => {
    const n = fc.vrouter.callsOf('baremetal/deploy/prepare').length;
    let r = await fc.api.post(`/v1/baremetal-instances/${inst.uuid}/actions?wait=true`, { reinstall: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await get('baremetal-instances', inst.uuid)).state, 'Running');
    assert.equal(fc.vrouter.callsOf('baremetal/deploy/prepare').length, n + 1);
    assert.equal((fc.vrouter.callsOf('baremetal/deploy/prepare').at(-1) as any).configDrive.network.ip, '10.88.0.2', 'same address');
    fc.vrouter.deploy.result = { ok: false, step: 'disk', message: 'no disk found' };
    r = await fc.api.post(`/v1/baremetal-instances/${inst.uuid}/actions?wait=true`, { reinstall: {} });
    assert.equal(r.body.code, 'DEPLOY_FAILED', JSON.stringify(r.body));
    assert.equal((await get('baremetal-instances', inst.uuid)).state, 'Error');
    const ch = await get('baremetal-chassis', chassis[0].uuid);
    assert.deepEqual([ch.status, ch.powerState, ch.bootDevice], ['Provisioned', 'Off', 'pxe']);
    assert.equal((await fc.api.post(`/v1/baremetal-instances/${inst.uuid}/actions`, { start: {} })).status, 409);
    fc.vrouter.deploy.result = { ok: true };
    r = await fc.api.post(`/v1/baremetal-instances/${inst.uuid}/actions?wait=true`, { reinstall: {} });
    assert.equal((await get('baremetal-instances', inst.uuid)).state, 'Running', JSON.stringify(r.body));
  });

  it('two machines provisioned at once get their own addresses; delete wipes through the ramdisk and frees the chassis', async () => {
    await fc.controller.store.update(chassis[2].uuid, { hardware: { cpuNum: 1, memorySize: 256 << 20, disks: [], nics: [{ name: 'eth0', mac: macs[2] }] } });
    const [a, b] = await Promise.all([create({ name: 'two-a', chassisUuid: chassis[1].uuid }), create({ name: 'two-b', chassisUuid: chassis[2].uuid })]);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(b.status, 200, JSON.stringify(b.body));
    const items = (await fc.api.get('/v1/baremetal-instances')).body.inventories;
    const ips = items.map((x: any) => x.ip).sort();
    assert.deepEqual(ips, ['10.88.0.2', '10.88.0.3', '10.88.0.4']);
    assert.ok(items.every((x: any) => x.state === 'Running'));
    for (const x of items) {
      const r = await fc.api.req('DELETE', `/v1/baremetal-instances/${x.uuid}?wait=true`);
      assert.ok(r.status < 300, JSON.stringify(r.body));
    }
    const applied = fc.vrouter.callsOf('baremetal/pxe/apply') as any[];
    assert.ok(applied.some((c) => c.server.machines.some((m: any) => m.mac === macs[0] && m.deploy?.action === 'wipe')), 'the ramdisk was sent to wipe');
    for (const i of [0, 1, 2]) await atRest(i, `deleted ${i}`);
    assert.equal((await get('baremetal-chassis', chassis[0].uuid)).bootDevice, 'pxe');
  });
});
