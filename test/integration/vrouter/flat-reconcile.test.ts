// The controller's flat reconcile area against a real vrouteragent process and real dnsmasq:
// the desired state comes from an inventory (SQLite), goes through the reconcile queue, and
// converges after a controller restart with marks still queued and after the agent is killed
// in the middle of an apply. The agent's own watchdog is off: only the controller repairs here.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { ReconcileQueue } from '../../../controller/reconcile/queue.js';
import { applyFlat, FLAT_AREA, flatArea, flatKey } from '../../../controller/network/flat-reconcile.js';
import type { CloudDeps } from '../../../controller/cloud/common.js';
import { exec } from '../../../shared/exec.js';
import { flatNames } from '../../../vrouteragent/names.js';
import { useCleanup } from '../../harness/cleanup.js';
import { createBridge } from '../../harness/net.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { dhcpOnce, fakeVm, restartHost, startHost, writeUdhcpcScript, type Host, type Vm } from './helpers.js';

const res = (kind: string, uuid: string, extra: Record<string, unknown>): Resource => ({ kind, uuid, name: `${kind}-${uuid.slice(0, 6)}`, createDate: new Date().toISOString(), lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra });
const ipOf = (i: number): string => `10.79.0.${i + 10}`;
const macOf = (i: number): string => `fa:16:3e:79:00:${(i + 10).toString(16).padStart(2, '0')}`;

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) assert.fail(`not within ${ms / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('flat services reconciled from the inventory (real agent, real dnsmasq)', function () {
  this.timeout(300_000);
  const cleanup = useCleanup();
  const l3 = randomUUID();
  const hostUuid = randomUUID();
  let store: InventoryStore;
  let A: Host;
  let dir: string;
  let script: string;
  let bridge: string;
  let vm0: Vm;
  let q: ReconcileQueue | undefined;
  const vms: string[] = [];
  const deps = (reconcile: ReconcileQueue): CloudDeps => ({ store, agentClient: new AgentClient(), reconcile }) as unknown as CloudDeps;
  const flatDir = (): string => join(A.agent.dataDir, 'vrouter/flat', l3.replace(/-/g, ''));
  const dhcpHosts = (): string => (existsSync(join(flatDir(), 'dhcp-hosts')) ? readFileSync(join(flatDir(), 'dhcp-hosts'), 'utf8') : '');
  const addVm = async (i: number): Promise<void> => {
    const vm = randomUUID();
    vms[i] = vm;
    await store.create(res('vm-instance', vm, { name: `rvm-${i}`, state: 'Running', hostUuid, lastHostUuid: hostUuid, l3NetworkUuids: [l3] }));
    await store.create(res('vm-nic', randomUUID(), { parentUuid: vm, vmInstanceUuid: vm, l3NetworkUuid: l3, ip: ipOf(i), mac: macOf(i), deviceId: 0 }));
  };

  before(async () => {
    dir = await tmpDir('vreconcile', cleanup);
    script = writeUdhcpcScript(dir);
    bridge = await createBridge(`${runId()}rbr`, cleanup);
    A = await startHost('r', cleanup, [l3], { watchdogMs: 0 });
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    cleanup.add(() => store.close(), 'store');
    cleanup.add(async () => q?.stop(), 'reconcile queue');
    await store.create(res('host', hostUuid, { status: 'Connected', managementIp: '127.0.0.1', _agents: { vrouteragent: { port: A.agent.port, token: A.agent.token } } }));
    const l2 = randomUUID();
    await store.create(res('l2-network', l2, { bridgeName: bridge, physicalInterface: 'none' }));
    await store.create(res('l3-network', l3, { parentUuid: l2, provider: 'Flat', networkServices: ['DHCP', 'DNS', 'UserData'], dnsDomain: 'rec.test' }));
    await store.create(res('ip-range', randomUUID(), { parentUuid: l3, startIp: '10.79.0.2', endIp: '10.79.0.250', netmask: '255.255.255.0', gateway: '10.79.0.1', networkCidr: '10.79.0.0/24' }));
    for (let i = 0; i < 20; i++) await addVm(i);
    vm0 = await fakeVm('r0', bridge, macOf(0), cleanup);
  });

  it('controller restart with marks still queued: the next controller’s first pass applies them', async () => {
    const q1 = new ReconcileQueue({ periodMs: 0 });
    q1.register(flatArea(deps(q1)));
    q1.mark(FLAT_AREA, flatKey(hostUuid, l3)); // marked, never applied: the controller goes away
    await q1.stop();
    assert.equal(dhcpHosts(), '', 'nothing applied by the stopped controller');

    q = new ReconcileQueue({ periodMs: 1_000, baseBackoffMs: 200, maxBackoffMs: 1_000 });
    q.register(flatArea(deps(q)));
    q.start();
    await until('the agent serves all 20 VMs', () => dhcpHosts().split('\n').filter(Boolean).length === 20);
    assert.equal((await dhcpOnce(vm0, script, dir))?.ip, ipOf(0));
  });

  it('agent killed in the middle of an apply: the periodic pass converges after it is back, a reused address included', async () => {
    // the next state: 40 more VMs, and VM 0's address goes to a new VM with another MAC
    for (let i = 20; i < 60; i++) await addVm(i);
    for (const nic of await store.byParent('vm-nic', vms[0]!)) await store.delete(nic.uuid);
    await store.delete(vms[0]!);
    const reused = randomUUID();
    const newMac = 'fa:16:3e:79:01:0a';
    await store.create(res('vm-instance', reused, { name: 'reused', state: 'Running', hostUuid, lastHostUuid: hostUuid, l3NetworkUuids: [l3] }));
    await store.create(res('vm-nic', randomUUID(), { parentUuid: reused, vmInstanceUuid: reused, l3NetworkUuid: l3, ip: ipOf(0), mac: newMac, deviceId: 0 }));

    const inFlight = applyFlat(deps(q!), flatKey(hostUuid, l3)).then(
      () => 'applied',
      (e: unknown) => `failed: ${(e as Error).message}`,
    );
    await new Promise((r) => setTimeout(r, 5));
    await A.agent.kill9();
    const outcome = await inFlight;
    // meanwhile the queue's own passes fail against the dead agent and back off
    await new Promise((r) => setTimeout(r, 1_500));
    // restarted to save desired.json 10 minutes after answering: the next test kills it in that window
    A.args = [...A.args, '--save-delay-ms', '600000'];
    await restartHost(A, cleanup);
    await store.update(hostUuid, { _agents: { vrouteragent: { port: A.agent.port, token: A.agent.token } } });

    await until('the agent serves the new state', () => {
      const h = dhcpHosts();
      return h.split('\n').filter(Boolean).length === 60 && h.includes(newMac) && !h.includes(macOf(0));
    });
    const st = q!.status().find((s) => s.key === flatKey(hostUuid, l3));
    await until('the key is applied without error', () => q!.status().some((s) => s.key === flatKey(hostUuid, l3) && s.attempts === 0 && s.lastAppliedAt !== undefined));
    // the "new VM" (the fake VM with the new MAC) gets the reused address: the old lease is gone
    await exec('ip', ['-n', vm0.ns, 'link', 'set', 'dev', vm0.ifname, 'address', newMac]);
    const l = await dhcpOnce(vm0, script, dir);
    assert.equal(l?.ip, ipOf(0), `reused address answered (in-flight apply: ${outcome}; status then: ${JSON.stringify(st)})`);
    assert.doesNotMatch(readFileSync(join(flatDir(), 'leases'), 'utf8'), new RegExp(macOf(0)));
  });

  // the agent answers once dnsmasq has the new files and writes desired.json after: killed in
  // between, it restarts from the older saved state, and the controller's next pass re-sends
  it('agent killed after answering, before it saved desired.json: the next pass sends the state again, it is served and saved', async () => {
    const saved = (): string => (existsSync(join(flatDir(), 'desired.json')) ? readFileSync(join(flatDir(), 'desired.json'), 'utf8') : '');
    const reconnect = (): Promise<Resource> => store.update(hostUuid, { _agents: { vrouteragent: { port: A.agent.port, token: A.agent.token } } });
    assert.deepEqual(A.args.slice(-2), ['--save-delay-ms', '600000'], 'the agent saves late (restarted so by the test before)');
    const mac = 'fa:16:3e:79:01:0b';
    const vm = randomUUID();
    await store.create(res('vm-instance', vm, { name: 'late-save', state: 'Running', hostUuid, lastHostUuid: hostUuid, l3NetworkUuids: [l3] }));
    await store.create(res('vm-nic', randomUUID(), { parentUuid: vm, vmInstanceUuid: vm, l3NetworkUuid: l3, ip: ipOf(70), mac, deviceId: 0 }));
    q!.mark(FLAT_AREA, flatKey(hostUuid, l3));
    await until('the new NIC is served', () => dhcpHosts().includes(mac));
    assert.doesNotMatch(saved(), new RegExp(mac), 'answered before desired.json was saved');

    await A.agent.kill9();
    A.args = A.args.slice(0, -2);
    await restartHost(A, cleanup); // from its saved (older) state, until the state is sent again
    await reconnect();
    await until('sent again by the periodic pass, and saved', () => dhcpHosts().includes(mac) && saved().includes(mac));
    await exec('ip', ['-n', vm0.ns, 'link', 'set', 'dev', vm0.ifname, 'address', mac]);
    assert.equal((await dhcpOnce(vm0, script, dir))?.ip, ipOf(70), 'dnsmasq answers the NIC the lost save had');
  });

  // drift only a check sees: a file dnsmasq reads rewritten behind the agent's back, and the DHCP
  // server address gone from the namespace (the namespace and veth exist, so an apply without
  // `verify` trusts both); the watchdog is off, so the periodic pass (1 s here) must repair them
  it('the periodic pass checks the host: a rewritten dhcp-hosts file and a removed DHCP server address are repaired', async () => {
    const hostsFile = join(flatDir(), 'dhcp-hosts');
    await until('applied', () => dhcpHosts().split('\n').filter(Boolean).length > 0);
    const good = dhcpHosts();
    const n = flatNames(l3, A.scheme);
    const addrs = async (): Promise<string> => (await exec('ip', ['-n', n.namespace, '-o', '-4', 'addr', 'show', 'dev', n.nsVeth])).stdout;
    const server = /inet (\S+)/.exec(await addrs())?.[1];
    assert.ok(server, 'the DHCP server address is on the namespace veth');
    writeFileSync(hostsFile, 'fa:16:3e:00:00:01,10.79.0.99\n');
    await exec('ip', ['-n', n.namespace, 'addr', 'del', server, 'dev', n.nsVeth]);
    assert.doesNotMatch(await addrs(), /inet /);
    await until('dhcp-hosts back', () => dhcpHosts() === good, 15_000);
    await until('the DHCP server address back', async () => (await addrs()).includes(`inet ${server}`), 15_000);
    assert.equal((await dhcpOnce(vm0, script, dir))?.ip, ipOf(70), 'dnsmasq answers again (vm0 has the MAC of the case before)');
  });
});
