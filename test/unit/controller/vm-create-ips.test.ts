// The vm-create `ips` step journals the NIC (its claim owner) before claiming an address and a
// MAC, so a controller that dies between the claim and the journal write leaks nothing: the
// rollback of the resumed flow releases what that owner holds.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource, StoreWrite } from '../../../controller/store/types.js';
import { vmCreateFlow, type VmCreateData } from '../../../controller/compute/vm.js';
import { ipNamespace } from '../../../controller/allocator/ip.js';
import { MAC_NAMESPACE } from '../../../controller/allocator/mac.js';
import type { FlowContext } from '../../../controller/workflow/flow.js';
import { logger } from '../../../shared/log.js';
import type { TStackError } from '../../../shared/errors.js';

const res = (kind: string, uuid: string, extra: Record<string, unknown> = {}): Resource =>
  ({ uuid, kind, name: uuid, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra }) as Resource;

describe('vm-create ips step: journal before claiming', () => {
  let store: InventoryStore;
  const ips = vmCreateFlow.steps.find((s) => s.name === 'ips')!;

  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    await store.create(res('host', 'h1', { parentUuid: 'c1' }));
    await store.create(res('l3-network', 'l3a'));
    await store.create(res('ip-range', 'r1', { parentUuid: 'l3a', startIp: '10.0.0.10', endIp: '10.0.0.20', gateway: '10.0.0.1', netmask: '255.255.255.0' }));
  });
  afterEach(() => store.close());

  /** A flow context whose journal is a list of snapshots of ctx.data (what survives a crash). */
  function ctxFor(s: InventoryStore): { ctx: FlowContext<VmCreateData>; journal: VmCreateData[] } {
    const journal: VmCreateData[] = [];
    const data: VmCreateData = { vm: res('vm-instance', 'vm1', { l3NetworkUuids: ['l3a'] }), hostUuid: 'h1', nics: [], data: [], services: [] };
    const ctx: FlowContext<VmCreateData> = {
      flowId: 'f1', flowName: 'vm-create', store: s, log: logger('test'), data, resumed: false,
      get controller(): never {
        throw new Error('this step needs no controller context');
      },
      save: async () => void journal.push(structuredClone(ctx.data)),
      saveWith: async (writes) => {
        journal.push(structuredClone(ctx.data));
        return s.batch(writes);
      },
      finishWith: () => assert.fail('the ips step leaves nothing to the flow end'),
      memo: new Map(),
      progress: () => undefined,
      taskId: (l: string) => `t.${l}`,
    };
    return { ctx, journal };
  }

  it('the claim owner is in the journal before any claim; a crash right after claiming leaks nothing once rolled back', async () => {
    // the "crash": the store dies right after the commit with the claims (and the NIC record)
    let claims = 0;
    const crashing: InventoryStore = Object.create(store, {
      batch: {
        value: async (ws: StoreWrite[]) => {
          const out = await store.batch(ws);
          claims += ws.filter((w) => w.op === 'claim').length;
          if (claims) throw new Error('controller died');
          return out;
        },
      },
    });
    const { ctx, journal } = ctxFor(crashing);
    await store.create(ctx.data.vm);
    await assert.rejects(ips.run(ctx), /controller died/);
    assert.equal(claims, 2, 'the address and the MAC were claimed in one commit');
    const last = journal.at(-1)!;
    assert.ok(last.pendingNic, 'the NIC owner was journaled before claiming');
    assert.equal(last.nics.length, 0, 'the claims themselves never reached the journal');
    const owner = last.pendingNic.uuid;
    assert.equal((await store.claims(ipNamespace('l3a'))).filter((c) => c.owner === owner).length, 1);
    assert.equal((await store.claims(MAC_NAMESPACE)).filter((c) => c.owner === owner).length, 1);
    // a restarted controller rolls back from the journal
    const resumed = ctxFor(store);
    resumed.ctx.data = structuredClone(last);
    await ips.rollback!(resumed.ctx);
    assert.deepEqual(await store.claims(ipNamespace('l3a')), []);
    assert.deepEqual(await store.claims(MAC_NAMESPACE), []);
  });

  it('a completed step records the NIC and clears the pending owner; rollback releases it', async () => {
    const { ctx, journal } = ctxFor(store);
    await store.create(ctx.data.vm);
    await ips.run(ctx);
    assert.equal(ctx.data.nics.length, 1);
    assert.equal(ctx.data.pendingNic, undefined);
    assert.equal(ctx.data.nics[0]!.ip, '10.0.0.10');
    assert.equal(journal.length, 1, 'one journal write per NIC: its owner, before the claims (the next save records the NIC)');
    await ips.rollback!(ctx);
    assert.deepEqual(await store.claims(ipNamespace('l3a')), []);
    assert.deepEqual(await store.claims(MAC_NAMESPACE), []);
    assert.equal(await store.get(ctx.data.nics[0]!.uuid), undefined);
  });

  it('an address another owner claimed meanwhile: the next one is picked, journaled and claimed with the NIC', async () => {
    const first = ctxFor(store);
    await store.create(first.ctx.data.vm);
    await ips.run(first.ctx);
    assert.equal(first.ctx.data.nics[0]!.ip, '10.0.0.10');
    // behind the allocator's back (another controller): the address its view has next
    assert.equal(await store.claim(ipNamespace('l3a'), '10.0.0.11', 'other'), true);
    const { ctx, journal } = ctxFor(store);
    ctx.data.vm = res('vm-instance', 'vm2', { l3NetworkUuids: ['l3a'] });
    await store.create(ctx.data.vm);
    await ips.run(ctx);
    const nic = ctx.data.nics[0]!;
    assert.equal(nic.ip, '10.0.0.12');
    assert.equal(journal.at(-1)!.nics[0]?.ip, '10.0.0.12', 'the address picked again is journaled before its claim');
    assert.equal((await store.get(nic.uuid))?.ip, '10.0.0.12');
    assert.deepEqual((await store.claims(ipNamespace('l3a'))).map((c) => [c.key, c.owner]), [['10.0.0.10', first.ctx.data.nics[0]!.uuid], ['10.0.0.11', 'other'], ['10.0.0.12', nic.uuid]]);
    assert.equal(((await store.get('vm2'))?.vmNics as Array<{ ip: string }>)[0]?.ip, '10.0.0.12');
  });

  it('a static address another owner holds: CONFLICT naming it, nothing written', async () => {
    assert.equal(await store.claim(ipNamespace('l3a'), '10.0.0.15', 'other'), true);
    const { ctx } = ctxFor(store);
    ctx.data.vm = res('vm-instance', 'vm1', { l3NetworkUuids: ['l3a'], staticIps: [{ l3NetworkUuid: 'l3a', ip: '10.0.0.15' }] });
    await store.create(ctx.data.vm);
    await assert.rejects(ips.run(ctx), (e: TStackError) => e.code === 'CONFLICT' && /10\.0\.0\.15 on L3 network l3a is already in use by other/.test(e.message));
    assert.deepEqual(await store.claims(MAC_NAMESPACE), []);
    assert.deepEqual((await store.claims(ipNamespace('l3a'))).map((c) => c.owner), ['other']);
    assert.equal((await store.list({ kind: 'vm-nic' })).total, 0);
    // the next dynamic address is still the lowest free one
    const next = ctxFor(store);
    next.ctx.data.vm = res('vm-instance', 'vm3', { l3NetworkUuids: ['l3a'] });
    await store.create(next.ctx.data.vm);
    await ips.run(next.ctx);
    assert.equal(next.ctx.data.nics[0]!.ip, '10.0.0.10');
  });

  it('a crash after the NIC record was made, before the next save: the journaled owner rolls back its claims and its record', async () => {
    const { ctx, journal } = ctxFor(store);
    await store.create(ctx.data.vm);
    await ips.run(ctx);
    const nic = ctx.data.nics[0]!;
    assert.ok(await store.get(nic.uuid), 'the NIC record exists');
    // what a restarted controller finds: the last journal write (pendingNic, no NIC yet)
    const last = journal.at(-1)!;
    assert.equal(last.pendingNic?.uuid, nic.uuid);
    assert.equal(last.nics.length, 0);
    const resumed = ctxFor(store);
    resumed.ctx.data = structuredClone(last);
    await ips.rollback!(resumed.ctx);
    assert.deepEqual(await store.claims(ipNamespace('l3a')), []);
    assert.deepEqual(await store.claims(MAC_NAMESPACE), []);
    assert.equal(await store.get(nic.uuid), undefined, 'the NIC record is gone');
  });
});
