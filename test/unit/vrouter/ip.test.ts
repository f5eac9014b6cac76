// ipOrder: the renderers' address order (numeric, stable for equal addresses).
import { strict as assert } from 'node:assert';
import { ipOrder, sortByIp } from '../../../vrouteragent/ip.js';

describe('vrouter ip: ipOrder', () => {
  it('orders by numeric address, not text, and keeps equal addresses in their given order', () => {
    const ips = ['10.0.0.100', '10.0.0.9', '9.255.255.255', '10.0.0.9', '255.255.255.255', '0.0.0.0', '10.0.0.10'];
    assert.deepEqual(ipOrder(ips.length, (i) => ips[i]!), [5, 2, 1, 3, 6, 0, 4]);
  });

  it('gives the order a stable sort by address gives (random lists with repeats)', () => {
    for (let t = 0; t < 50; t++) {
      const xs = Array.from({ length: 1 + Math.floor(Math.random() * 300) }, (_, i) => ({ ip: `${Math.floor(Math.random() * 3) * 100}.0.${Math.floor(Math.random() * 4)}.${Math.floor(Math.random() * 256)}`, i }));
      assert.deepEqual(ipOrder(xs.length, (i) => xs[i]!.ip), sortByIp(xs).map((x) => x.i));
    }
  });
});
