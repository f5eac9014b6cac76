// The vm-create `ips` step journals its NICs (their claim owners) in the commit that claims their
// addresses and MACs and writes their records (issue 19: the owner was a journal save of its
// own before the claims), so a controller that dies on either side of that commit leaks
// nothing: before it nothing of the step was written, after it the rollback of the resumed flow
// releases what the journaled NICs hold.
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

describe('vm-create ips step: the journal with the claims', () => {
  let store: InventoryStore;
  const ips = vmCreateFlow.steps.find((s) => s.name === 'ips')!;

  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    await store.create(res('host', 'h1', { parentUuid: 'c1' }));
    await store.create(res('l3-network', 'l3a'));
    await store.create(res('ip-range', 'r1', { parentUuid: 'l3a', startIp: '10.0.0.10', endIp: '10.0.0.20', gateway: '10.0.0.1', netmask: '255.255.255.0' }));
  });
  afterEach(() => store.close());

  /**
   * A flow context whose journal is a doc written in the same batch as saveWith's writes, as the
   * flow engine writes it (what survives a crash); `journal` lists the saves that committed.
   */
  function ctxFor(s: InventoryStore): { ctx: FlowContext<VmCreateData>; journal: VmCreateData[] } {
    const journal: VmCreateData[] = [];
    const data: VmCreateData = { vm: res('vm-instance', 'vm1', { l3NetworkUuids: ['l3a'] }), hostUuid: 'h1', nics: [], data: [], services: [] };
    const ctx: FlowContext<VmCreateData> = {
      flowId: 'f1', flowName: 'vm-create', store: s, log: logger('test'), data, resumed: false,
      get controller(): never {
        throw new Error('this step needs no controller context');
      },
      save: async () => {
        const snap = structuredClone(ctx.data);
        await s.putDoc('journal', 'f1', snap);
        journal.push(snap);
      },
      saveWith: async (writes) => {
        const snap = structuredClone(ctx.data);
        const out = (await s.batch([{ op: 'putDoc', collection: 'journal', id: 'f1', doc: snap }, ...writes])).slice(1);
        journal.push(snap);
        return out;
      },
      finishWith: () => assert.fail('the ips step leaves nothing to the flow end'),
      defer: () => assert.fail('the ips step defers nothing'),
      memo: new Map(),
      progress: () => undefined,
      taskId: (l: string) => `t.${l}`,
    };
    return { ctx, journal };
  }
  const journaled = async (): Promise<VmCreateData | undefined> => store.getDoc<VmCreateData>('journal', 'f1');

  it('a crash right after the commit with the claims: the journal names the NIC, whose rollback leaks nothing', async () => {
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
    const { ctx } = ctxFor(crashing);
    await store.create(ctx.data.vm);
    await assert.rejects(ips.run(ctx), /controller died/);
    assert.equal(claims, 2, 'the address and the MAC were claimed in one commit');
    const last = (await journaled())!;
    assert.equal(last.nics.length, 1, 'the NIC was journaled by the commit that claimed for it');
    const owner = last.nics[0]!.uuid;
    assert.equal((await store.claims(ipNamespace('l3a'))).filter((c) => c.owner === owner).length, 1);
    assert.equal((await store.claims(MAC_NAMESPACE)).filter((c) => c.owner === owner).length, 1);
    assert.ok(await store.get(owner), 'and its record written');
    // a restarted controller rolls back from the journal
    const resumed = ctxFor(store);
    resumed.ctx.data = structuredClone(last);
    await ips.rollback!(resumed.ctx);
    assert.deepEqual(await store.claims(ipNamespace('l3a')), []);
    assert.deepEqual(await store.claims(MAC_NAMESPACE), []);
    assert.equal(await store.get(owner), undefined);
  });

  it('a crash before that commit: no claim, no NIC record and no journal of the step', async () => {
    const dying: InventoryStore = Object.create(store, {
      batch: {
        value: async () => {
          throw new Error('controller died');
        },
      },
    });
    const { ctx, journal } = ctxFor(dying);
    await store.create(ctx.data.vm);
    await assert.rejects(ips.run(ctx), /controller died/);
    assert.equal(journal.length, 0);
    assert.equal(await journaled(), undefined);
    assert.deepEqual((await store.claims(ipNamespace('l3a'))).filter((c) => !c.owner.startsWith('dhcp:')), []);
    assert.deepEqual(await store.claims(MAC_NAMESPACE), []);
    assert.equal((await store.list({ kind: 'vm-nic' })).total, 0);
  });

  it('a completed step journals the NIC in its one commit; rollback releases it', async () => {
    const { ctx, journal } = ctxFor(store);
    await store.create(ctx.data.vm);
    await ips.run(ctx);
    assert.equal(ctx.data.nics.length, 1);
    assert.equal(ctx.data.nics[0]!.ip, '10.0.0.10');
    assert.equal(journal.length, 1, 'one journal write: with the claims');
    assert.equal(journal[0]!.nics[0]?.uuid, ctx.data.nics[0]!.uuid);
    assert.equal(((await store.get('vm1'))?.vmNics as unknown[]).length, 1);
    await ips.rollback!(ctx);
    assert.deepEqual(await store.claims(ipNamespace('l3a')), []);
    assert.deepEqual(await store.claims(MAC_NAMESPACE), []);
    assert.equal(await store.get(ctx.data.nics[0]!.uuid), undefined);
  });

  it('a journal of an older version with a pending NIC: the resumed run gives back what that owner holds and claims afresh', async () => {
    assert.equal(await store.claim(ipNamespace('l3a'), '10.0.0.10', 'old-nic'), true);
    assert.equal(await store.claim(MAC_NAMESPACE, 'fa:00:00:00:00:01', 'old-nic'), true);
    await store.create(res('vm-nic', 'old-nic', { parentUuid: 'vm1', l3NetworkUuid: 'l3a' }));
    const { ctx } = ctxFor(store);
    await store.create(ctx.data.vm);
    ctx.data.pendingNic = { uuid: 'old-nic', l3NetworkUuid: 'l3a' };
    Object.defineProperty(ctx, 'resumed', { value: true });
    await ips.run(ctx);
    assert.equal(ctx.data.pendingNic, undefined);
    assert.equal(await store.get('old-nic'), undefined);
    const nic = ctx.data.nics[0]!;
    assert.deepEqual((await store.claims(ipNamespace('l3a'))).map((c) => c.owner), [nic.uuid]);
    assert.deepEqual((await store.claims(MAC_NAMESPACE)).map((c) => c.owner), [nic.uuid]);
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
    assert.equal(journal.at(-1)!.nics[0]?.ip, '10.0.0.12', 'the address picked again is journaled with its claim');
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
});
