// L2 bridge naming and the `ip`/`bridge` argument lists planned for NoVlan, Vlan and Vxlan.
import assert from 'node:assert/strict';
import type { BridgeRequestT } from '../../../shared/protocol/kvm.js';
import { check } from '../../../shared/protocol/schema.js';
import * as kvm from '../../../shared/protocol/kvm.js';
import { l2Names, noVlanBridgeName, vlanBridgeName, vlanSubIfName, vxlanBridgeName, vxlanDevName, isValidIfName } from '../../../kvmagent/network/names.js';
import { planCreate, planDelete, parseIpLinks, parseFdbPeers, show, type Cmd, type HostLinks, type LinkState } from '../../../kvmagent/network/plan.js';
import { FakeNetwork } from '../../../kvmagent/network/bridges.js';

function host(links: Partial<LinkState>[], fdb: Record<string, string[]> = {}): HostLinks {
  const m = new Map<string, LinkState>();
  for (const l of links) m.set(l.name!, { up: true, mtu: 1500, ipv4: [], ...l } as LinkState);
  return { links: m, fdb: new Map(Object.entries(fdb)) };
}
const cmds = (p: { cmds: Cmd[] }): string[] => p.cmds.map(show);

describe('kvmagent: L2 network naming and ip command plans', () => {
  describe('names', () => {
    it('follow the fixed scheme and fit IFNAMSIZ', () => {
      assert.equal(noVlanBridgeName('eth0'), 'br_eth0');
      assert.equal(vlanBridgeName('eth0', 100), 'br_eth0_100');
      assert.equal(vlanSubIfName('eth0', 100), 'eth0.100');
      assert.equal(vxlanDevName(16_777_215), 'vxlan16777215');
      assert.equal(vxlanBridgeName(16_777_215), 'br_vx_16777215');
      for (const n of [vlanBridgeName('enp0s31f6', 4094), vlanSubIfName('enp0s31f6xyz', 4094), noVlanBridgeName('enp0s31f6abcd')]) {
        assert.ok(n.length <= 15 && isValidIfName(n), n);
      }
      // long names hash deterministically, and differently per VLAN
      assert.match(vlanBridgeName('enp0s31f6', 4094), /^br_h[0-9a-f]{10}$/);
      assert.equal(vlanBridgeName('enp0s31f6', 4094), vlanBridgeName('enp0s31f6', 4094));
      assert.notEqual(vlanBridgeName('enp0s31f6', 4094), vlanBridgeName('enp0s31f6', 4093));
    });

    it('requests are validated: required fields per type, interface names, multicast group', () => {
      assert.throws(() => l2Names({ type: 'NoVlan' }), /physicalInterface/);
      assert.throws(() => l2Names({ type: 'Vlan', physicalInterface: 'eth0' }), /vlan/);
      assert.throws(() => l2Names({ type: 'Vxlan', vni: 5 }), /vtepIp/);
      assert.throws(() => l2Names({ type: 'Vxlan', vni: 5, vtepIp: '10.0.0.1', group: '10.1.1.1', physicalInterface: 'eth0' }), /multicast/);
      assert.throws(() => l2Names({ type: 'Vxlan', vni: 5, vtepIp: '10.0.0.1', group: '239.1.1.1' }), /physicalInterface/);
      assert.throws(() => l2Names({ type: 'NoVlan', physicalInterface: 'eth0;reboot' }), /not a valid interface name/);
      // the schema already refuses shell characters and over-long names
      assert.deepEqual(check(kvm.BridgeRequest, { type: 'NoVlan', physicalInterface: 'eth0 && id' }).map((e) => e.field), ['physicalInterface']);
      assert.deepEqual(check(kvm.BridgeRequest, { type: 'Vlan', physicalInterface: 'eth0', vlan: 4095 }).map((e) => e.field), ['vlan']);
      assert.deepEqual(check(kvm.BridgeRequest, { type: 'Vxlan', vni: 5, vtepIp: '10.0.0.300' }).map((e) => e.field), ['vtepIp']);
    });
  });

  describe('planCreate', () => {
    it('NoVlan: bridge + enslave the NIC + up', () => {
      const p = planCreate({ type: 'NoVlan', physicalInterface: 'eth1' }, host([{ name: 'eth1' }]));
      assert.deepEqual(cmds(p), ['ip link add name br_eth1 type bridge', 'ip link set dev eth1 master br_eth1', 'ip link set dev br_eth1 up']);
    });

    it('Vlan: sub-interface + bridge, with MTU', () => {
      const p = planCreate({ type: 'Vlan', physicalInterface: 'eth1', vlan: 100, mtu: 1400 }, host([{ name: 'eth1' }]));
      assert.deepEqual(cmds(p), [
        'ip link add name br_eth1_100 type bridge',
        'ip link add link eth1 name eth1.100 type vlan id 100',
        'ip link set dev eth1.100 mtu 1400',
        'ip link set dev eth1.100 master br_eth1_100',
        'ip link set dev br_eth1_100 mtu 1400',
        'ip link set dev eth1.100 up',
        'ip link set dev br_eth1_100 up',
      ]);
    });

    it('Vxlan unicast: nolearning device + head-end replication fdb entries (not to itself)', () => {
      const p = planCreate({ type: 'Vxlan', vni: 4242, vtepIp: '198.18.0.1', peers: ['198.18.0.2', '198.18.0.3', '198.18.0.1'] }, host([]));
      assert.deepEqual(cmds(p), [
        'ip link add name br_vx_4242 type bridge',
        'ip link add vxlan4242 type vxlan id 4242 local 198.18.0.1 dstport 4789 nolearning',
        'ip link set dev vxlan4242 master br_vx_4242',
        'ip link set dev vxlan4242 up',
        'ip link set dev br_vx_4242 up',
        'bridge fdb append 00:00:00:00:00:00 dev vxlan4242 dst 198.18.0.2',
        'bridge fdb append 00:00:00:00:00:00 dev vxlan4242 dst 198.18.0.3',
      ]);
    });

    it('Vxlan multicast on an underlay NIC', () => {
      const p = planCreate({ type: 'Vxlan', vni: 7, vtepIp: '10.0.0.1', group: '239.1.1.7', physicalInterface: 'eth1', dstPort: 8472 }, host([{ name: 'eth1' }]));
      assert.equal(cmds(p)[1], 'ip link add vxlan7 type vxlan id 7 local 10.0.0.1 dstport 8472 group 239.1.1.7 dev eth1');
    });

    it('is idempotent: nothing to do when everything is in place; peers reconciled', () => {
      const links = [
        { name: 'br_vx_9', kind: 'bridge' },
        { name: 'vxlan9', kind: 'vxlan', vni: 9, local: '198.18.0.1', dstPort: 4789, master: 'br_vx_9' },
      ];
      const req: BridgeRequestT = { type: 'Vxlan', vni: 9, vtepIp: '198.18.0.1', peers: ['198.18.0.2'] };
      assert.deepEqual(cmds(planCreate(req, host(links, { vxlan9: ['198.18.0.2'] }))), []);
      assert.deepEqual(cmds(planCreate(req, host(links, { vxlan9: ['198.18.0.5'] }))), [
        'bridge fdb append 00:00:00:00:00:00 dev vxlan9 dst 198.18.0.2',
        'bridge fdb del 00:00:00:00:00:00 dev vxlan9 dst 198.18.0.5',
      ]);
      const down = host([{ name: 'eth1', master: 'br_eth1' }, { name: 'br_eth1', kind: 'bridge', up: false }]);
      assert.deepEqual(cmds(planCreate({ type: 'NoVlan', physicalInterface: 'eth1' }, down)), ['ip link set dev br_eth1 up']);
    });

    it('refuses clearly: missing NIC, a NIC with addresses, conflicting devices', () => {
      assert.throws(
        () => planCreate({ type: 'NoVlan', physicalInterface: 'eth9' }, host([{ name: 'eth0' }])),
        (e: Error & { code?: string }) => e.code === 'NETWORK_ERROR' && /physical interface 'eth9' does not exist/.test(e.message),
      );
      assert.throws(() => planCreate({ type: 'NoVlan', physicalInterface: 'eth0' }, host([{ name: 'eth0', ipv4: ['10.0.0.5/24'] }])), /cut the host's connectivity/);
      assert.throws(() => planCreate({ type: 'NoVlan', physicalInterface: 'eth1' }, host([{ name: 'eth1', master: 'other' }])), /already enslaved/);
      assert.throws(() => planCreate({ type: 'NoVlan', physicalInterface: 'eth1' }, host([{ name: 'eth1' }, { name: 'br_eth1', kind: 'veth' }])), /not a bridge/);
      assert.throws(
        () => planCreate({ type: 'Vxlan', vni: 9, vtepIp: '198.18.0.1' }, host([{ name: 'vxlan9', kind: 'vxlan', vni: 10, local: '198.18.0.1', dstPort: 4789 }])),
        /different settings \(vni 10\)/,
      );
      assert.throws(() => planCreate({ type: 'Vlan', physicalInterface: 'eth1', vlan: 5 }, host([{ name: 'eth1' }, { name: 'eth1.5', kind: 'vlan', vlanId: 6, link: 'eth1' }])), /not VLAN 5/);
    });
  });

  describe('planDelete', () => {
    it('removes the bridge and its member, never the physical NIC', () => {
      const h = host([{ name: 'eth1' }, { name: 'eth1.7', kind: 'vlan', vlanId: 7, link: 'eth1', master: 'br_eth1_7' }, { name: 'br_eth1_7', kind: 'bridge' }]);
      assert.deepEqual(cmds(planDelete({ type: 'Vlan', physicalInterface: 'eth1', vlan: 7 }, h)), ['ip link del dev eth1.7', 'ip link del dev br_eth1_7']);
      const n = host([{ name: 'eth1', master: 'br_eth1' }, { name: 'br_eth1', kind: 'bridge' }]);
      assert.deepEqual(cmds(planDelete({ type: 'NoVlan', physicalInterface: 'eth1' }, n)), ['ip link set dev eth1 nomaster', 'ip link del dev br_eth1']);
      assert.deepEqual(cmds(planDelete({ type: 'Vxlan', vni: 3, vtepIp: '1.1.1.1' }, host([]))), [], 'deleting what is absent is a no-op');
    });

    it('refuses while VM ports remain on the bridge', () => {
      const h = host([{ name: 'br_vx_3', kind: 'bridge' }, { name: 'vxlan3', kind: 'vxlan', master: 'br_vx_3' }, { name: 'vn0123', kind: 'tun', master: 'br_vx_3' }]);
      assert.throws(() => planDelete({ type: 'Vxlan', vni: 3, vtepIp: '1.1.1.1' }, h), /still has ports vn0123/);
    });
  });

  it('parses `ip -j -d addr show` and `bridge -j fdb show`', () => {
    const links = parseIpLinks(
      JSON.stringify([
        { ifname: 'eth0', flags: ['BROADCAST', 'UP'], mtu: 1500, addr_info: [{ family: 'inet', local: '10.0.0.5', prefixlen: 24 }, { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] },
        { ifname: 'br_vx_10', flags: ['UP'], mtu: 1450, linkinfo: { info_kind: 'bridge', info_data: {} } },
        { ifname: 'vxlan10', flags: [], mtu: 1450, master: 'br_vx_10', linkinfo: { info_kind: 'vxlan', info_data: { id: 10, local: '198.18.0.1', port: 4789 }, info_slave_kind: 'bridge', info_slave_data: { id: '0x8001' } } },
        { ifname: 'eth0.5', flags: ['UP'], mtu: 1500, link: 'eth0', linkinfo: { info_kind: 'vlan', info_data: { protocol: '802.1Q', id: 5 } } },
      ]),
    );
    assert.deepEqual(links.get('eth0'), { name: 'eth0', up: true, mtu: 1500, ipv4: ['10.0.0.5/24'] });
    assert.deepEqual(links.get('vxlan10'), { name: 'vxlan10', kind: 'vxlan', master: 'br_vx_10', up: false, mtu: 1450, ipv4: [], vni: 10, local: '198.18.0.1', dstPort: 4789 });
    assert.equal(links.get('eth0.5')!.vlanId, 5);
    assert.equal(links.get('eth0.5')!.link, 'eth0');
    assert.deepEqual(
      parseFdbPeers('[{"mac":"5e:7a:58:fc:47:8a","flags":[],"master":"br_t","state":"permanent"},{"mac":"00:00:00:00:00:00","dst":"198.18.0.2","flags":["self"],"state":"permanent"}]'),
      ['198.18.0.2'],
    );
  });

  it('the fake network follows the same plans (create twice, check, delete)', async () => {
    const f = new FakeNetwork(['eth0']);
    const req: BridgeRequestT = { type: 'Vxlan', vni: 11, vtepIp: '10.0.0.1', peers: ['10.0.0.2'] };
    assert.equal((await f.create(req)).changed, true);
    assert.equal((await f.create(req)).changed, false);
    assert.deepEqual(await f.check(req), { bridgeName: 'br_vx_11', memberName: 'vxlan11', changed: false, exists: true, problems: [] });
    assert.equal(await f.bridgeExists('br_vx_11'), true);
    await f.delete(req);
    assert.equal(await f.bridgeExists('br_vx_11'), false);
    assert.deepEqual([...f.links.keys()], ['eth0']);
  });
});
