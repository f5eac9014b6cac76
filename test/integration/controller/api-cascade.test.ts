// Cascade delete through the REST API of a real controller (SQLite file, HTTP): the model's
// delete rules (controller/model/cascade.ts) decide generic deletes and refuse early for
// deletes served by modules.
//   zone with a cluster → 409 naming the cluster (details.dependents); ?cascade=true deletes
//   the tree; cluster ⇄ PS, cluster ⇄ L2 and zone ⇄ BS attachments of deleted resources are
//   gone; a VM pins its host, cluster and zone (even with cascade); a primary storage still
//   attached to a cluster needs cascade; a normal account never cascades into what it cannot
//   change.
// Hosts and VMs are written to the inventory directly (creating them needs agents); every
// delete goes through the API.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { attach, attachmentUuid } from '../../../controller/model/attachments.js';
import type { Resource } from '../../../controller/store/types.js';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';

describe('controller API: cascade delete (real SQLite, real HTTP)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let adminUuid: string;
  const hostDeletes: string[] = [];

  before(async function () {
    c = await testController(cleanup, {
      registry: new ApiRegistry(),
      // stands in for the host module: its delete must never run while the rules refuse
      modules: [
        {
          name: 'test-hosts',
          install: (s) =>
            s.registry.setDelete('hosts', {
              long: true,
              run: async (r, _q, oc) => {
                hostDeletes.push(r.uuid);
                await oc.store.delete(r.uuid);
                return r;
              },
            }),
        },
      ],
    });
    admin = await c.login('admin', c.adminPassword);
    adminUuid = (await admin.get('/v1/accounts?q=name=admin')).body.inventories[0].uuid;
  });

  const created = async (col: string, body: Record<string, unknown>): Promise<Resource> => {
    const r = await admin.post(`/v1/${col}`, body);
    assert.equal(r.status, 201, `${col}: ${JSON.stringify(r.body)}`);
    return r.body as Resource;
  };
  const gone = async (col: string, uuid: string): Promise<boolean> => (await admin.get(`/v1/${col}/${uuid}`)).status === 404;
  const raw = (kind: string, name: string, extra: Record<string, unknown>): Promise<Resource> =>
    c.store.create({ uuid: randomUUID(), kind, name, createDate: '', lastOpDate: '', ownerAccountUuid: adminUuid, tags: [], ...extra });

  /** zone → cluster → host; PS and L2 (→ L3 → IP range) attached to the cluster; a BS attached to the zone. */
  async function tree(prefix: string) {
    const zone = await created('zones', { name: `${prefix}-z` });
    const cluster = await created('clusters', { name: `${prefix}-c`, zoneUuid: zone.uuid, hypervisorType: 'KVM' });
    const ps = await created('primary-storage', { name: `${prefix}-ps`, zoneUuid: zone.uuid, type: 'LocalStorage', url: '/var/lib/tstack/ps' });
    const l2 = await created('l2-networks', { name: `${prefix}-l2`, zoneUuid: zone.uuid, physicalInterface: 'eth9' });
    const l3 = await created('l3-networks', { name: `${prefix}-l3`, l2NetworkUuid: l2.uuid });
    const range = await created('ip-ranges', { name: `${prefix}-r`, l3NetworkUuid: l3.uuid, startIp: '10.9.0.10', endIp: '10.9.0.20', netmask: '255.255.255.0', gateway: '10.9.0.1' });
    const host = await raw('host', `${prefix}-h`, { parentUuid: cluster.uuid, clusterUuid: cluster.uuid, zoneUuid: zone.uuid, managementIp: '192.0.2.10', state: 'Enabled', status: 'Disconnected' });
    const bs = await raw('backup-storage', `${prefix}-bs`, { url: '/var/lib/tstack/bs', type: 'ImageStore', state: 'Enabled', status: 'Connected' });
    const att = [
      await attach(c.store, 'cluster-primary-storage', cluster.uuid, ps.uuid, adminUuid),
      await attach(c.store, 'cluster-l2-network', cluster.uuid, l2.uuid, adminUuid),
      await attach(c.store, 'zone-backup-storage', zone.uuid, bs.uuid, adminUuid),
    ];
    return { zone, cluster, ps, l2, l3, range, host, bs, att };
  }

  it('a zone with a cluster is refused (409 naming the cluster); ?cascade=true deletes the tree and its attachments', async function () {
    const t = await tree('cz1');
    const refused = await admin.del(`/v1/zones/${t.zone.uuid}`);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'CONFLICT');
    assert.match(refused.body.message, /cluster cz1-c/);
    assert.match(refused.body.message, /cascade/);
    const deps = refused.body.details.dependents as Array<{ uuid: string; kind: string }>;
    assert.ok(deps.some((d) => d.uuid === t.cluster.uuid && d.kind === 'cluster'), JSON.stringify(deps));
    assert.ok(deps.some((d) => d.uuid === t.l2.uuid) && deps.some((d) => d.uuid === t.ps.uuid), 'L2 network and primary storage named too');
    for (const [col, u] of [['zones', t.zone.uuid], ['clusters', t.cluster.uuid], ['hosts', t.host.uuid]] as const) assert.equal((await admin.get(`/v1/${col}/${u}`)).status, 200, `${col} untouched`);

    const bad = await admin.del(`/v1/zones/${t.zone.uuid}?cascade=maybe`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'cascade');

    const del = await admin.del(`/v1/zones/${t.zone.uuid}?cascade=true`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal(del.body.uuid, t.zone.uuid);
    for (const [col, u] of [['zones', t.zone.uuid], ['clusters', t.cluster.uuid], ['hosts', t.host.uuid], ['primary-storage', t.ps.uuid], ['l2-networks', t.l2.uuid], ['l3-networks', t.l3.uuid], ['ip-ranges', t.range.uuid]] as const) {
      assert.ok(await gone(col, u), `${col} ${u} deleted`);
    }
    for (const a of t.att) assert.equal(await c.store.get(a.uuid), undefined, `attachment ${a.kind} removed`);
    assert.equal((await admin.get(`/v1/backup-storage/${t.bs.uuid}`)).status, 200, 'the backup storage itself stays (only its zone attachment goes)');
    assert.deepEqual(hostDeletes, [], 'a cascade deletes hosts in the inventory, not through the host module');
  });

  it('deleting a cluster removes its PS and L2 attachments; a PS still attached to a cluster needs cascade', async function () {
    const t = await tree('cz2');
    const ps = await admin.del(`/v1/primary-storage/${t.ps.uuid}`);
    assert.equal(ps.status, 409, JSON.stringify(ps.body));
    assert.match(ps.body.message, /detach it from the clusters first/);
    assert.ok(ps.body.details.dependents.some((d: { uuid: string }) => d.uuid === attachmentUuid('cluster-primary-storage', t.cluster.uuid, t.ps.uuid)));

    assert.equal((await admin.del(`/v1/clusters/${t.cluster.uuid}`)).status, 409, 'the cluster has a host');
    await c.store.delete(t.host.uuid);
    const cl = await admin.del(`/v1/clusters/${t.cluster.uuid}`);
    assert.equal(cl.status, 200, JSON.stringify(cl.body));
    assert.equal(await c.store.get(attachmentUuid('cluster-primary-storage', t.cluster.uuid, t.ps.uuid)), undefined);
    assert.equal(await c.store.get(attachmentUuid('cluster-l2-network', t.cluster.uuid, t.l2.uuid)), undefined);
    // now detached; an L2 takes its L3 networks (and their IP ranges) along only with cascade
    assert.equal((await admin.del(`/v1/primary-storage/${t.ps.uuid}`)).status, 200);
    assert.equal((await admin.del(`/v1/l2-networks/${t.l2.uuid}`)).status, 409, 'the L2 has an L3');
    assert.equal((await admin.del(`/v1/l2-networks/${t.l2.uuid}?cascade=true`)).status, 200);
    assert.ok(await gone('l3-networks', t.l3.uuid));
    assert.ok(await gone('ip-ranges', t.range.uuid));
    const bs = await admin.del(`/v1/zones/${t.zone.uuid}`);
    assert.equal(bs.status, 200, 'only attachments are left in the zone: no cascade needed');
    assert.equal(await c.store.get(t.att[2]!.uuid), undefined, 'zone ⇄ backup storage attachment removed');
  });

  it('a host referenced by a VM cannot be deleted (not even its cluster or zone with cascade)', async function () {
    const t = await tree('cz3');
    const vm = await raw('vm-instance', 'cz3-vm', { state: 'Running', hostUuid: t.host.uuid, clusterUuid: t.cluster.uuid, zoneUuid: t.zone.uuid });
    const h = await admin.del(`/v1/hosts/${t.host.uuid}?wait=true`);
    assert.equal(h.status, 409, JSON.stringify(h.body));
    assert.match(h.body.message, /cz3-vm/);
    assert.deepEqual(
      h.body.details.dependents.map((d: { uuid: string }) => d.uuid),
      [vm.uuid],
    );
    assert.equal(h.body.jobUuid, undefined, 'refused before a job started');
    assert.deepEqual(hostDeletes, [], "the host module's delete never ran");
    for (const [col, u] of [['clusters', t.cluster.uuid], ['zones', t.zone.uuid]] as const) {
      const r = await admin.del(`/v1/${col}/${u}?cascade=true`);
      assert.equal(r.status, 409, `${col}: ${JSON.stringify(r.body)}`);
      assert.ok(r.body.details.dependents.some((d: { uuid: string }) => d.uuid === vm.uuid), col);
    }
    assert.equal((await admin.get(`/v1/hosts/${t.host.uuid}`)).status, 200);

    await c.store.delete(vm.uuid);
    const ok = await admin.del(`/v1/hosts/${t.host.uuid}?wait=true`);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(hostDeletes, [t.host.uuid]);
    assert.equal((await admin.del(`/v1/zones/${t.zone.uuid}?cascade=true`)).status, 200);
  });

  it("a normal account deletes its own resources but never cascades into another account's", async function () {
    const b = await c.account('cascade-b');
    // a volume of B with a snapshot of B: the snapshot always goes with it
    const vol = await raw('volume', 'b-vol', { ownerAccountUuid: b.accountUuid, type: 'Data', state: 'Enabled', status: 'NotInstantiated' });
    const snap = await raw('volume-snapshot', 'b-snap', { ownerAccountUuid: b.accountUuid, parentUuid: vol.uuid, volumeUuid: vol.uuid });
    // a zone of B (as if the admin had given it away) with a cluster of the admin below it
    const z = await raw('zone', 'b-zone', { ownerAccountUuid: b.accountUuid, state: 'Enabled' });
    const cl = await raw('cluster', 'admin-cluster', { parentUuid: z.uuid, zoneUuid: z.uuid, state: 'Enabled' });
    const refused = await b.del(`/v1/zones/${z.uuid}?cascade=true`);
    assert.equal(refused.status, 403, 'zones are admin-only to delete');
    // the rule itself, through the planner the API uses
    const { planApiDelete } = await import('../../../controller/api/crud.js');
    const oc = { principal: { accountUuid: b.accountUuid, accountName: 'b', isAdmin: false, sessionId: 's' }, store: c.store } as unknown as Parameters<typeof planApiDelete>[2];
    await assert.rejects(planApiDelete(z, { cascade: 'true' }, oc), (e: Error & { code?: string; details?: { dependents?: unknown[] } }) => {
      assert.equal(e.code, 'CONFLICT');
      assert.doesNotMatch(e.message, /admin-cluster/, 'never names what B cannot see');
      assert.match(e.message, /ask the admin/);
      assert.deepEqual(e.details?.dependents, []);
      return true;
    });
    await assert.rejects(planApiDelete(z, {}, oc), (e: Error) => !/admin-cluster/.test(e.message) && /ask the admin/.test(e.message));
    assert.ok(await c.store.get(cl.uuid));
    // B's own plan: the volume takes its snapshot along (volumes are deleted by the compute
    // module, so through the planner here too)
    const plan = await planApiDelete(vol, {}, oc);
    assert.deepEqual(plan.deletes.map((x) => x.uuid), [snap.uuid, vol.uuid]);
    // an admin-owned snapshot under B's volume: refused without naming it
    const foreign = await raw('volume-snapshot', 'admin-snap', { parentUuid: vol.uuid, volumeUuid: vol.uuid });
    await assert.rejects(planApiDelete(vol, {}, oc), (e: Error) => /ask the admin/.test(e.message) && !/admin-snap/.test(e.message));
    for (const x of [foreign, snap, vol, cl, z]) await c.store.delete(x.uuid);
  });
});
