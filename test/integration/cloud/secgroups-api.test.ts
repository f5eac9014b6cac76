// /v1/security-groups on a real in-process controller (SQLite), without agents: the kind, its
// actions, the 400s that name the field (nothing stored), accounts, and the desired firewall the
// controller computes from what the API stored. NIC records are written to the store directly
// (as a VM create would) since no host runs VMs here.
import assert from 'node:assert/strict';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { cloudModule } from '../../../controller/cloud/install.js';
import { secgroupModule } from '../../../controller/secgroup/module.js';
import { hostFirewall, loadSnapshot } from '../../../controller/secgroup/desired.js';

const HOST = '99999999-0000-4000-8000-000000000009';

describe('security groups API', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let c: TestController;
  let api: ApiClient;
  const ids: Record<string, string> = {};
  const nic = async (n: number, l3: string, owner?: string): Promise<string> => {
    const uuid = `eeeeeeee-0000-4000-8000-${String(n).padStart(12, '0')}`;
    const vm = `dddddddd-0000-4000-8000-${String(n).padStart(12, '0')}`;
    const own = owner ?? c.auth.adminAccountUuid;
    await c.store.create({ uuid: vm, kind: 'vm-instance', name: `vm${n}`, createDate: '', lastOpDate: '', ownerAccountUuid: own, tags: [], state: 'Running', hostUuid: HOST });
    await c.store.create({ uuid, kind: 'vm-nic', name: `vm${n}-nic0`, createDate: '', lastOpDate: '', ownerAccountUuid: own, tags: [], parentUuid: vm, vmInstanceUuid: vm, l3NetworkUuid: l3, ip: `10.9.9.${n}`, mac: `fa:00:00:00:00:${String(n).padStart(2, '0')}`, internalName: `vn${String(n).padStart(11, '0')}` });
    return uuid;
  };
  const act = (uuid: string, body: unknown) => api.post(`/v1/security-groups/${uuid}/actions`, body);

  before(async () => {
    c = await testController(cleanup, { modules: [cloudModule({ hosts: true, tracker: false }), secgroupModule()] } as never);
    api = await c.login('admin', c.adminPassword);
    const mk = async (path: string, body: unknown): Promise<string> => {
      const r = await api.post(`${path}?wait=true`, body);
      assert.ok(r.status < 300, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.uuid;
    };
    ids.zone = await mk('/v1/zones', { name: 'z' });
    ids.l2 = await mk('/v1/l2-networks', { name: 'l2', zoneUuid: ids.zone, physicalInterface: 'eth9' });
    ids.l3 = await mk('/v1/l3-networks', { name: 'l3', l2NetworkUuid: ids.l2 });
    ids.l3b = await mk('/v1/l3-networks', { name: 'l3b', l2NetworkUuid: ids.l2 });
    await mk('/v1/ip-ranges', { l3NetworkUuid: ids.l3, networkCidr: '10.9.9.0/24' });
    await c.store.create({ uuid: '11111111-1111-4111-8111-111111111111', kind: 'image', name: 'img', createDate: '', lastOpDate: '', ownerAccountUuid: c.auth.adminAccountUuid, tags: [], state: 'Enabled', status: 'Ready', mediaType: 'RootVolumeTemplate', format: 'qcow2', size: 1 << 20, backupStorageRefs: [] });
    ids.nic1 = await nic(1, ids.l3);
    ids.nic2 = await nic(2, ids.l3);
    ids.nic3 = await nic(3, ids.l3b);
  });

  it('create: the group has the two default rules (ALL in/out with itself as remote) and no NICs', async () => {
    const r = await api.post('/v1/security-groups', { name: 'web', description: 'front' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    ids.web = r.body.uuid;
    assert.equal(r.body.state, 'Enabled');
    assert.deepEqual(r.body.attachedL3NetworkUuids, []);
    assert.deepEqual(r.body.vmNicUuids, []);
    assert.deepEqual(
      r.body.rules.map((x: any) => [x.type, x.protocol, x.startPort, x.endPort, x.remoteSecurityGroupUuid, x.ipVersion]),
      [['Ingress', 'ALL', -1, -1, ids.web, 4], ['Egress', 'ALL', -1, -1, ids.web, 4]],
    );
    for (const x of r.body.rules) assert.match(x.uuid, /^[0-9a-f-]{36}$/);
    ids.db = (await api.post('/v1/security-groups', { name: 'db' })).body.uuid;
    const list = await api.get('/v1/security-groups?q=name=web');
    assert.equal(list.body.total, 1);
  });

  it('bad rules are refused with 400 naming the field, and nothing is applied', async () => {
    const bad: Array<[unknown, string]> = [
      [{ type: 'Ingress', protocol: 'TCP', startPort: 70000, endPort: 70000 }, 'addRules.rules.0.startPort'],
      [{ type: 'Ingress', protocol: 'TCP', startPort: 90, endPort: 80 }, 'addRules.rules.0.endPort'],
      [{ type: 'Ingress', protocol: 'TCP', startPort: 22, endPort: 22, allowedCidr: '10.0.0.0/33' }, 'addRules.rules.0.allowedCidr'],
      [{ type: 'Ingress', protocol: 'TCP', startPort: 22, endPort: 22, allowedCidr: '300.0.0.0/8' }, 'addRules.rules.0.allowedCidr'],
      [{ type: 'Ingress', protocol: 'ICMP', startPort: 22, endPort: 80 }, 'addRules.rules.0.startPort'],
      [{ type: 'Ingress', protocol: 'ALL', startPort: 1, endPort: 2 }, 'addRules.rules.0.startPort'],
      [{ type: 'Ingress', protocol: 'TCP' }, 'addRules.rules.0.startPort'],
      [{ type: 'Sideways', protocol: 'TCP', startPort: 1, endPort: 2 }, 'addRules.rules.0.type'],
      [{ type: 'Ingress', protocol: 'ALL', remoteSecurityGroupUuid: '12345678-0000-4000-8000-000000000000' }, 'addRules.rules.0.remoteSecurityGroupUuid'],
      [{ type: 'Ingress', protocol: 'ALL', remoteSecurityGroupUuid: ids.web }, 'addRules.rules.0'], // the default rule again
    ];
    for (const [rule, field] of bad) {
      const r = await act(ids.web, { addRules: { rules: [{ type: 'Ingress', protocol: 'TCP', startPort: 443, endPort: 443 }, rule].reverse() } });
      assert.equal(r.status, 400, `${JSON.stringify(rule)}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.details?.field ?? r.body.field, field, JSON.stringify(r.body));
    }
    assert.equal((await api.get(`/v1/security-groups/${ids.web}`)).body.rules.length, 2, 'nothing was added');
  });

  it('a remote group of another account is refused; the other account does not see this group', async () => {
    const b = await c.account('sg-other');
    const theirs = await b.post('/v1/security-groups', { name: 'theirs' });
    assert.equal(theirs.status, 201);
    const r = await act(ids.web, { addRules: { rules: [{ type: 'Ingress', protocol: 'ALL', remoteSecurityGroupUuid: theirs.body.uuid }] } });
    assert.equal(r.status, 400);
    assert.equal(r.body.details?.field ?? r.body.field, 'addRules.rules.0.remoteSecurityGroupUuid');
    assert.equal((await b.get(`/v1/security-groups/${ids.web}`)).status, 404);
    const theirsOnMine = await b.post(`/v1/security-groups/${theirs.body.uuid}/actions`, { addRules: { rules: [{ type: 'Ingress', protocol: 'ALL', remoteSecurityGroupUuid: ids.web }] } });
    assert.equal(theirsOnMine.status, 400);
  });

  it('rules are added with uuids (CIDR normalised) and removed by uuid', async () => {
    const r = await act(ids.web, { addRules: { rules: [{ type: 'Ingress', protocol: 'TCP', startPort: 22, endPort: 22, allowedCidr: '192.168.1.77/24' }, { type: 'Ingress', protocol: 'ICMP' }, { type: 'Ingress', protocol: 'TCP', startPort: 5432, endPort: 5432, remoteSecurityGroupUuid: ids.db }] } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.rules.length, 5);
    const ssh = r.body.rules.find((x: any) => x.startPort === 22);
    assert.equal(ssh.allowedCidr, '192.168.1.0/24');
    const icmp = r.body.rules.find((x: any) => x.protocol === 'ICMP');
    assert.deepEqual([icmp.startPort, icmp.endPort], [-1, -1]);
    const rm = await act(ids.web, { removeRules: { ruleUuids: [icmp.uuid] } });
    assert.equal(rm.body.rules.length, 4);
    const again = await act(ids.web, { removeRules: { ruleUuids: [icmp.uuid] } });
    assert.equal(again.status, 400);
    assert.equal(again.body.details?.field ?? again.body.field, 'removeRules.ruleUuids.0');
  });

  it('NICs join only from attached L3 networks; several groups per NIC; the view lists members', async () => {
    const early = await act(ids.web, { addVmNics: { vmNicUuids: [ids.nic1] } });
    assert.equal(early.status, 400, 'the L3 is not attached yet');
    assert.equal(early.body.details?.field ?? early.body.field, 'addVmNics.vmNicUuids.0');
    assert.match(early.body.message, /not attached/);
    assert.equal((await act(ids.web, { attachL3Network: { l3NetworkUuid: ids.l3 } })).status, 200);
    assert.equal((await act(ids.web, { attachL3Network: { l3NetworkUuid: ids.l3 } })).status, 409);
    assert.equal((await act(ids.db, { attachL3Network: { l3NetworkUuid: ids.l3 } })).status, 200);
    const wrongL3 = await act(ids.web, { addVmNics: { vmNicUuids: [ids.nic1, ids.nic3] } });
    assert.equal(wrongL3.status, 400);
    assert.equal(wrongL3.body.details?.field ?? wrongL3.body.field, 'addVmNics.vmNicUuids.1');
    assert.deepEqual((await api.get(`/v1/security-groups/${ids.web}`)).body.vmNicUuids, [], 'nothing joined');
    const ok = await act(ids.web, { addVmNics: { vmNicUuids: [ids.nic1] } });
    assert.deepEqual(ok.body.vmNicUuids, [ids.nic1]);
    assert.deepEqual((await act(ids.db, { addVmNics: { vmNicUuids: [ids.nic1, ids.nic2] } })).body.vmNicUuids, [ids.nic1, ids.nic2]);
  });

  it('the desired firewall of the host follows the inventory', async () => {
    const fw = hostFirewall(HOST, await loadSnapshot(c.store, HOST));
    assert.deepEqual(fw.nics.map((n) => n.tap), ['vn00000000001', 'vn00000000002']);
    const n1 = fw.nics[0]!;
    assert.equal(n1.egressWhitelist, false);
    assert.ok(n1.ingress.some((r) => r.protocol === 'TCP' && r.startPort === 22 && r.cidr === '192.168.1.0/24'));
    assert.ok(n1.ingress.some((r) => r.startPort === 5432 && r.remoteGroupUuid === ids.db));
    assert.deepEqual(fw.sets.find((s) => s.groupUuid === ids.db)?.ips, ['10.9.9.1', '10.9.9.2']);
    assert.deepEqual(fw.sets.find((s) => s.groupUuid === ids.web)?.ips, ['10.9.9.1']);
    // other hosts have nothing
    assert.deepEqual(hostFirewall('88888888-0000-4000-8000-000000000008', await loadSnapshot(c.store, '88888888-0000-4000-8000-000000000008')).nics, []);
  });

  it('removeVmNics, detachL3Network releases that L3’s NICs, a deleted NIC leaves its groups', async () => {
    assert.deepEqual((await act(ids.db, { removeVmNics: { vmNicUuids: [ids.nic2] } })).body.vmNicUuids, [ids.nic1]);
    assert.equal((await act(ids.db, { removeVmNics: { vmNicUuids: [ids.nic2] } })).status, 400);
    const d = await act(ids.db, { detachL3Network: { l3NetworkUuid: ids.l3 } });
    assert.deepEqual(d.body.attachedL3NetworkUuids, []);
    assert.deepEqual(d.body.vmNicUuids, []);
    await c.store.delete(ids.nic1);
    for (let i = 0; i < 50 && (await api.get(`/v1/security-groups/${ids.web}`)).body.vmNicUuids.length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual((await api.get(`/v1/security-groups/${ids.web}`)).body.vmNicUuids, []);
  });

  it('VM create refuses a group attached to none of its L3 networks (400 naming securityGroupUuids.0)', async () => {
    const r = await api.post('/v1/vm-instances?wait=true', { name: 'v', cpuNum: 1, memorySize: 64 * 1024 * 1024, imageUuid: '11111111-1111-4111-8111-111111111111', l3NetworkUuids: [ids.l3b], securityGroupUuids: [ids.web] });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(String(r.body.details?.field ?? r.body.field), /^securityGroupUuids\.0$/);
  });

  it('deleting a group drops the rules of other groups that name it', async () => {
    const web = (await api.get(`/v1/security-groups/${ids.web}`)).body;
    assert.ok(web.rules.some((x: any) => x.remoteSecurityGroupUuid === ids.db));
    const del = await api.del(`/v1/security-groups/${ids.db}`);
    assert.ok(del.status === 200 || del.status === 204, JSON.stringify(del.body));
    assert.equal((await api.get(`/v1/security-groups/${ids.db}`)).status, 404);
    const after = (await api.get(`/v1/security-groups/${ids.web}`)).body;
    assert.equal(after.rules.some((x: any) => x.remoteSecurityGroupUuid === ids.db), false);
    assert.equal(after.rules.length, 3);
  });
});
