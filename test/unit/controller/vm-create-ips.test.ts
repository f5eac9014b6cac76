// The vm-create `ips` step journals the NIC (its claim owner) before claiming an address and a
// MAC, so a controller that dies between the claim and the journal write leaks nothing: the
// rollback of the resumed flow releases what that owner holds.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { vmCreateFlow, type VmCreateData } from '../../../controller/compute/vm.js';
import { ipNamespace } from '../../../controller/allocator/ip.js';
import { MAC_NAMESPACE } from '../../../controller/allocator/mac.js';
import type { FlowContext } from '../../../controller/workflow/flow.js';
import { logger } from '../../../shared/log.js';

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
    // the "crash": the store dies right after the MAC claim succeeds
    let claims = 0;
    const crashing: InventoryStore = Object.create(store, {
      claim: {
        value: async (ns: string, key: string, owner: string) => {
          const ok = await store.claim(ns, key, owner);
          if (ns === MAC_NAMESPACE && ok) throw new Error('controller died');
          claims++;
          return ok;
        },
      },
    });
    const { ctx, journal } = ctxFor(crashing);
    await assert.rejects(ips.run(ctx), /controller died/);
    assert.equal(claims, 1, 'the address was claimed');
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
