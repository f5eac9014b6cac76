// The desired state of one (host, flat L3) as flat/apply sends it: each NIC of the host once, with
// what its DHCP entry, DNS name and metadata record need; DNS records only for other hosts' names;
// a name held by an older VM of the L3 leaves a later NIC unnamed; services the L3 lacks are off.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { desiredFlat } from '../../../controller/network/flat-reconcile.js';
import { storeNics, type NicSource } from '../../../controller/network/flat-nics.js';
import type { CloudDeps } from '../../../controller/cloud/common.js';
import { expandFlat } from '../../../vrouteragent/render/flat-desired.js';
import { validateFlatApply } from '../../../vrouteragent/validate.js';

const uuid = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const [H1, H2, L2, L3] = [uuid(1), uuid(2), uuid(3), uuid(4)];
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbZ0u7xkD2rXg0vN3k1p6Q0y5b7u1xv8tJ6m0q1w2e3 a@b';

const res = (kind: string, u: string, extra: Record<string, unknown>): Resource => ({ kind, uuid: u, name: `${kind}-${u.slice(-4)}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra });

async function inventory(services: string[]): Promise<{ store: InventoryStore; l3: Resource }> {
  const store = await openStore({ backend: 'sqlite', path: ':memory:' });
  for (const h of [H1, H2]) await store.create(res('host', h, { status: 'Connected' }));
  await store.create(res('l2-network', L2, { bridgeName: 'br-test' }));
  const l3 = await store.create(res('l3-network', L3, { parentUuid: L2, provider: 'Flat', networkServices: services, dnsDomain: 'test.local' }));
  await store.create(res('ip-range', uuid(5), { parentUuid: L3, startIp: '10.0.0.2', endIp: '10.0.0.250', netmask: '255.255.255.0', gateway: '10.0.0.1', networkCidr: '10.0.0.0/24' }));
  const vm = async (n: number, name: string, host: string, extra: Record<string, unknown> = {}): Promise<void> => {
    await store.create(res('vm-instance', uuid(100 + n), { name, state: 'Running', hostUuid: host, lastHostUuid: host, l3NetworkUuids: [L3], createDate: `2026-01-0${n}T00:00:00Z`, ...extra }));
    await store.create(res('vm-nic', uuid(200 + n), { parentUuid: uuid(100 + n), vmInstanceUuid: uuid(100 + n), l3NetworkUuid: L3, ip: `10.0.0.${10 + n}`, mac: `fa:16:3e:00:00:${10 + n}`, deviceId: 0 }));
  };
  await vm(1, 'web', H1, { userData: '#!/bin/sh\necho hi\n', sshKey: KEY });
  await vm(2, 'db', H2);
  await vm(3, 'WEB', H1); // the same name as vm 1, created later: an address, no name
  await vm(4, 'cache', H1, { state: 'Stopped', hostUuid: undefined });
  return { store, l3 };
}

describe('flat desired state (flat/apply: each NIC once)', () => {
  it("the host's NICs once each, other hosts' names as records, a later duplicate name unnamed", async () => {
    const { store, l3 } = await inventory(['DHCP', 'DNS', 'UserData']);
    const want = (await desiredFlat({ store } as unknown as CloudDeps, H1, l3))!;
    assert.equal(want.dhcp, undefined, 'DHCP on (the default)');
    assert.equal(want.network.metadata, true);
    assert.deepEqual(want.nics, [
      { mac: 'fa:16:3e:00:00:11', ip: '10.0.0.11', vmUuid: uuid(101), hostname: 'web', userData: '#!/bin/sh\necho hi\n', sshKeys: [KEY] },
      { mac: 'fa:16:3e:00:00:13', ip: '10.0.0.13', vmUuid: uuid(103), hostname: 'web', named: false },
      { mac: 'fa:16:3e:00:00:14', ip: '10.0.0.14', vmUuid: uuid(104), hostname: 'cache' },
    ]);
    assert.deepEqual(want.dns.records, [{ name: 'db', ip: '10.0.0.12' }]);
    // what the agent makes of it: valid, and the parts protocol 1 sent
    validateFlatApply(want);
    const parts = expandFlat(want);
    assert.deepEqual(
      parts.dhcp.map((e) => [e.ip, e.hostname]),
      [
        ['10.0.0.11', 'web'],
        ['10.0.0.13', undefined],
        ['10.0.0.14', 'cache'],
      ],
    );
    assert.deepEqual(parts.dns.records.map((r) => r.name).sort(), ['cache', 'db', 'web']);
    assert.deepEqual(
      parts.metadata.map((r) => [r.ip, r.instanceId, r.hostname]),
      [
        ['10.0.0.11', uuid(101), 'web'],
        ['10.0.0.13', uuid(103), 'web'],
        ['10.0.0.14', uuid(104), 'cache'],
      ],
    );
    const other = (await desiredFlat({ store } as unknown as CloudDeps, H2, l3))!;
    assert.deepEqual(other.nics.map((n) => n.hostname), ['db']);
    assert.deepEqual(other.dns.records, [
      { name: 'web', ip: '10.0.0.11' },
      { name: 'cache', ip: '10.0.0.14' },
    ]);
    await store.close();
  });

  it('one list of NICs for every host (a periodic pass): each host gets what a fresh read gives it', async () => {
    const { store, l3 } = await inventory(['DHCP', 'DNS', 'UserData']);
    const d = { store } as unknown as CloudDeps;
    const list = await storeNics(store).liveNics(L3);
    const same: NicSource = { liveNics: () => Promise.resolve(list) };
    for (const h of [H1, H2, H1]) assert.deepEqual(await desiredFlat(d, h, l3, same), await desiredFlat(d, h, l3), h);
    // a host that serves nothing there (and holds no address) gets nothing from the same list
    assert.equal(await desiredFlat(d, uuid(9), l3, same), undefined);
    await store.close();
  });

  it('an L3 without DHCP and metadata: DHCP off, no user data or keys sent', async () => {
    const { store, l3 } = await inventory(['DNS']);
    const want = (await desiredFlat({ store } as unknown as CloudDeps, H1, l3))!;
    assert.equal(want.dhcp, false);
    assert.equal(want.network.metadata, false);
    assert.ok(want.nics.every((n) => n.userData === undefined && n.sshKeys === undefined));
    const parts = expandFlat(want);
    assert.deepEqual(parts.dhcp, []);
    assert.deepEqual(parts.metadata, []);
    assert.deepEqual(parts.dns.records.map((r) => r.name).sort(), ['cache', 'db', 'web']);
    await store.close();
  });
});
