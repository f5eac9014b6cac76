// Functional tier (issue 19): each host's flat/apply carries the other hosts' DNS records of the
// L3 as the changes since what its agent acknowledged, checked by digest; an agent that lost
// them (restarted without its state) refuses the delta with DNS_BASE_MISMATCH and is sent the
// whole set; either way every host ends with exactly the other hosts' names. Simulated hosts
// (each keeps the digest of what it was sent, and a power cycle loses it) behind a real controller.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { Simulator } from '../../simulator/simulator.js';
import { setupSimulatedCloud, type SimCloudIds, randomSimFirstIp } from '../harness/simulated-cloud.js';
import { freePort } from '../harness/ports.js';
import { desiredFlat, FLAT_AREA, flatKey } from '../../controller/network/flat-reconcile.js';
import * as V from '../../shared/protocol/vrouter.js';
import { digestOf } from '../../shared/dns-set.js';
import type { AgentClient } from '../../controller/agent-client/client.js';

const waitFor = async (what: string, f: () => Promise<boolean>, ms = 15_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** One flat/apply as the controller sent it: to which agent, in which form, and how it ended. */
interface Sent {
  url: string;
  form: 'delta' | 'whole';
  verify: boolean;
  delta?: { remove: unknown[]; add: unknown[] };
  error?: string;
}

describe('functional: flat DNS records as deltas, the whole set on a mismatch', function () {
  this.timeout(90_000);
  const cleanup = new Cleanup();
  let sim: Simulator;
  let c: TestController;
  let api: ApiClient;
  let ids: SimCloudIds;
  const sent: Sent[] = [];
  const vms: Array<{ uuid: string; hostUuid: string; name: string }> = [];

  before(async () => {
    sim = new Simulator({ hosts: 3, firstIp: randomSimFirstIp(), port: await freePort() });
    await sim.start();
    cleanup.add(() => sim.stop(), 'simulator');
    // no periodic pass (the last case runs one): these cases count the forms; retries come
    // late, so a refused delta converges only if the apply itself falls back to the whole set
    c = await testController(cleanup, { reconcile: { periodMs: 0, baseBackoffMs: 30_000, maxBackoffMs: 30_000 }, modules: [cloudModule({ hosts: true, hostOptions: { pingIntervalMs: 200, maxMisses: 2, autoReconnectMs: 0 }, ha: false })] } as never);
    api = await c.login('admin', c.adminPassword);
    ids = await setupSimulatedCloud(api, sim.hosts.map((h) => sim.info(h)), { prefix: 'dnsd', vms: 20 });
    // every flat/apply the controller sends, seen on its way out
    const client = c.agentClient as AgentClient;
    const call = client.call.bind(client);
    client.call = (async (cmd: { name: string }, ep: { url: string }, req: any, ...rest: unknown[]) => {
      if (cmd.name !== V.FlatApply.name) return (call as any)(cmd, ep, req, ...rest);
      const s: Sent = { url: ep.url, form: req.dns.delta ? 'delta' : 'whole', verify: req.verify === true, ...(req.dns.delta ? { delta: req.dns.delta } : {}) };
      sent.push(s);
      try {
        return await (call as any)(cmd, ep, req, ...rest);
      } catch (e) {
        s.error = (e as { code?: string }).code ?? String(e);
        throw e;
      }
    }) as never;
    for (let i = 0; i < 9; i++) {
      const r = await api.post('/v1/vm-instances?wait=true', { name: `dnsd${i}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
      assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
      const vm = r.body.result ?? r.body;
      vms.push({ uuid: vm.uuid, hostUuid: vm.hostUuid, name: vm.name });
    }
    assert.equal(new Set(vms.map((v) => v.hostUuid)).size, 3, 'VMs on every host (placement spreads them)');
  });
  after(() => cleanup.run());

  const urlOf = (i: number): string => `http://${sim.hosts[i]!.managementIp}:${sim.hosts[i]!.port}`;
  /** What host i's agent holds, and what the inventory says it should (the other hosts' names). */
  const heldAndWanted = async (i: number): Promise<[string | undefined, string]> => {
    const want = await desiredFlat(c, ids.hosts[i]!, (await c.store.get(ids.l3))!);
    return [sim.hosts[i]!.vrouter?.dnsDigests.get(ids.l3), digestOf(want!.dns.records)];
  };
  const converged = async (i: number): Promise<boolean> => {
    const [held, wanted] = await heldAndWanted(i);
    return held === wanted;
  };
  const syncAll = async (): Promise<void> => {
    for (const h of ids.hosts) await c.reconcile.sync(FLAT_AREA, flatKey(h, ids.l3));
  };

  it("a renamed VM reaches the other hosts as a delta of one record out and one in; each holds exactly the other hosts' names", async () => {
    await syncAll();
    for (let i = 0; i < 3; i++) assert.ok(await converged(i), `host ${i} holds the other hosts' names`);
    const vm = vms.find((v) => v.hostUuid === ids.hosts[0])!;
    const r = await api.put(`/v1/vm-instances/${vm.uuid}`, { name: 'dnsd-renamed' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const from = sent.length;
    await syncAll();
    const now = sent.slice(from);
    for (const i of [1, 2]) {
      const mine = now.filter((s) => s.url === urlOf(i));
      assert.equal(mine.length, 1, `one apply to host ${i}`);
      assert.equal(mine[0]!.form, 'delta', `host ${i}: a delta, not the whole set`);
      assert.deepEqual(mine[0]!.delta, { ...mine[0]!.delta, remove: [{ name: 'dnsd' + vm.name.slice(4), ip: (mine[0]!.delta!.remove[0] as { ip: string }).ip }], add: [{ name: 'dnsd-renamed', ip: (mine[0]!.delta!.remove[0] as { ip: string }).ip }] });
      assert.equal(mine[0]!.error, undefined);
    }
    for (let i = 0; i < 3; i++) assert.ok(await converged(i), `host ${i} converged`);
  });

  it('a host whose agent restarted without its state refuses the delta (DNS_BASE_MISMATCH) and is sent the whole set; it converges', async () => {
    // another VM renamed: host 1 has a delta waiting for it
    const vm = vms.find((v) => v.hostUuid === ids.hosts[2])!;
    assert.equal((await api.put(`/v1/vm-instances/${vm.uuid}`, { name: 'dnsd-second' })).status, 200);
    await sim.powerOff(1);
    await waitFor('Disconnected', async () => (await api.get(`/v1/hosts/${ids.hosts[1]}`)).body.status === 'Disconnected');
    const from = sent.length;
    await sim.powerOn(1);
    assert.equal(sim.hosts[1]!.vrouter?.dnsDigests.size, 0, 'the restarted agent holds nothing');
    await waitFor('Connected again', async () => (await api.get(`/v1/hosts/${ids.hosts[1]}`)).body.status === 'Connected');
    await waitFor('host 1 converged', () => converged(1));
    const mine = sent.slice(from).filter((s) => s.url === urlOf(1));
    const refused = mine.findIndex((s) => s.form === 'delta' && s.error === 'DNS_BASE_MISMATCH');
    assert.ok(refused >= 0, `a delta was refused: ${JSON.stringify(mine.map((s) => [s.form, s.error]))}`);
    assert.equal(mine[refused + 1]?.form, 'whole', 'then the whole set');
    assert.equal(mine[refused + 1]?.error, undefined);
    const st = c.reconcile.status().find((s) => s.area === FLAT_AREA && s.key === flatKey(ids.hosts[1]!, ids.l3));
    assert.equal(st?.lastError, undefined, 'the key applied without an error (the fallback is part of the apply)');
    // and it is back on deltas
    const from2 = sent.length;
    await syncAll();
    assert.ok(sent.slice(from2).every((s) => s.form === 'delta' && s.error === undefined), JSON.stringify(sent.slice(from2)));
    for (let i = 0; i < 3; i++) assert.ok(await converged(i), `host ${i} converged`);
  });

  it("a periodic pass checks every host with an empty delta; the drift is repaired; a host that lost its set refuses it and converges in the same apply", async () => {
    await syncAll();
    for (let i = 0; i < 3; i++) assert.ok(await converged(i), `host ${i} converged before the pass`);
    // files on every host drifted; host 2's agent lost its set without the controller knowing
    for (const h of sim.hosts) h.vrouter!.drifted.add(ids.l3);
    sim.hosts[2]!.vrouter!.dnsDigests.delete(ids.l3);
    const from = sent.length;
    await c.reconcile.passNow();
    await c.reconcile.idle();
    const now = sent.slice(from);
    for (const i of [0, 1]) {
      const mine = now.filter((s) => s.url === urlOf(i)).map((s) => [s.form, s.verify, s.delta?.remove.length, s.delta?.add.length, s.error]);
      assert.deepEqual(mine, [['delta', true, 0, 0, undefined]], `host ${i}: one empty delta, checked`);
    }
    const two = now.filter((s) => s.url === urlOf(2)).map((s) => [s.form, s.verify, s.error]);
    assert.deepEqual(two, [
      ['delta', true, 'DNS_BASE_MISMATCH'],
      ['whole', true, undefined],
    ]);
    for (let i = 0; i < 3; i++) {
      assert.equal(sim.hosts[i]!.vrouter!.drifted.has(ids.l3), false, `host ${i}: the check repaired the drift`);
      assert.ok(await converged(i), `host ${i} converged`);
    }
    const st = c.reconcile.status().find((s) => s.area === FLAT_AREA && s.key === flatKey(ids.hosts[2]!, ids.l3));
    assert.equal(st?.lastError, undefined, 'no error: the fallback is part of the apply');
    // marks between passes do not check again
    const from2 = sent.length;
    await syncAll();
    assert.ok(sent.slice(from2).every((s) => !s.verify && s.form === 'delta'), JSON.stringify(sent.slice(from2)));
  });
});
