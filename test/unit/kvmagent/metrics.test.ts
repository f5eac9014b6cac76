// kvmagent metrics: parsers of virsh domstats and procfs, and the values computed between two
// samples (pure; real collector against the fake driver at the end).
import assert from 'node:assert/strict';
import client from 'prom-client';
import { parseDomstats, parseProcStat, parseMeminfo, parseNetDev, parseDiskstats } from '../../../kvmagent/metrics/stats.js';
import { computeValues, diskLetter, MetricsCollector } from '../../../kvmagent/metrics/collector.js';
import { FakeDriver } from '../../../kvmagent/hypervisor/fake-driver.js';
import { fromPromName, promName } from '../../../shared/metric-names.js';

const U = '94f263fa-1ffc-468c-b1f1-20d257e73ed7';
const domstats = (cpu: number, vcpu0: number, rd: number, rx: number): string => `Domain: 'tstack-${U}'
  state.state=1
  cpu.time=${cpu}
  balloon.current=196608
  balloon.rss=98304
  vcpu.current=1
  vcpu.maximum=1
  vcpu.0.time=${vcpu0}
  net.count=1
  net.0.name=vn9eabff254e0
  net.0.rx.bytes=${rx}
  net.0.rx.pkts=268
  net.0.rx.errs=0
  net.0.tx.bytes=27254
  net.0.tx.pkts=218
  net.0.tx.errs=0
  block.count=2
  block.0.name=vda
  block.0.rd.reqs=607
  block.0.rd.bytes=${rd}
  block.0.wr.reqs=0
  block.0.wr.bytes=0
  block.1.name=vda
  block.1.rd.reqs=1
  block.1.rd.bytes=1

Domain: 'other-vm'
  cpu.time=5
`;

describe('kvmagent metrics', () => {
  it('parses virsh domstats (backing-chain entries of a disk counted once)', () => {
    const [d, other] = parseDomstats(domstats(14_000_000_000, 11_000_000_000, 18520064, 38125));
    assert.equal(d?.name, `tstack-${U}`);
    assert.equal(d?.cpuTimeNs, 14e9);
    assert.deepEqual(d?.vcpuTimesNs, [11e9]);
    assert.equal(d?.disks.length, 1);
    assert.equal(d?.disks[0]?.rdBytes, 18520064);
    assert.equal(d?.nics[0]?.dev, 'vn9eabff254e0');
    assert.equal(other?.name, 'other-vm');
  });

  it('computes utilisation and rates between two samples; only tstack domains', () => {
    const a = { at: 0, vms: new Map(parseDomstats(domstats(10e9, 10e9, 1000, 0)).map((s) => [s.name, s])) };
    const b = { at: 10_000, vms: new Map(parseDomstats(domstats(15e9, 15e9, 11_000, 5000)).map((s) => [s.name, s])) };
    assert.equal(computeValues(undefined, a).vm.get('CPUAverageUsedUtilization')!.length, 0, 'no rate from one sample');
    const v = computeValues(a, b).vm;
    assert.deepEqual(v.get('CPUAverageUsedUtilization'), [{ labels: { VMUuid: U }, value: 50 }]);
    assert.deepEqual(v.get('CPUUsedUtilization'), [{ labels: { VMUuid: U, CPUNum: '0' }, value: 50 }]);
    assert.deepEqual(v.get('DiskReadBytes'), [{ labels: { VMUuid: U, DiskDeviceLetter: 'a' }, value: 1000 }]);
    assert.deepEqual(v.get('NetworkInBytes'), [{ labels: { VMUuid: U, NetworkDeviceLetter: 'vn9eabff254e0' }, value: 500 }]);
    assert.deepEqual(v.get('MemoryUsedInPercent'), [{ labels: { VMUuid: U }, value: 50 }]);
    assert.equal(diskLetter('sdb'), 'b');
  });

  it('parses procfs and computes host CPU and memory', () => {
    const s1 = parseProcStat('cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0\n');
    const s2 = parseProcStat('cpu  200 0 200 1400 200 0 0 0 0 0\ncpu0 150 0 50 400 0 0 0 0\ncpu1 50 0 150 1000 200 0 0 0\n');
    const mem = parseMeminfo('MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n');
    assert.deepEqual(mem, { totalBytes: 1024000, availableBytes: 256000 });
    const net = parseNetDev('Inter-|\n face |\n    lo: 1 2 3 4 5 6 7 8 9 10 11\n  eth0: 100 2 1 0 0 0 0 0 200 3 0 0 0 0 0 0\n vnet3: 1 1 1 1 1 1 1 1 1 1 1\n');
    assert.deepEqual(net.map((n) => n.dev), ['eth0']);
    const disks = parseDiskstats('   8       0 sda 10 0 20 0 30 0 40 0 0 0 0\n   8       1 sda1 1 0 2 0 3 0 4 0 0 0 0\n   7 0 loop0 1 1 1 1 1 1 1 1 1 1 1\n');
    assert.deepEqual(disks, [{ dev: 'sda', rdReqs: 10, rdBytes: 20 * 512, wrReqs: 30, wrBytes: 40 * 512 }]);
    const host = (stat: typeof s1) => ({ stat, mem, net, disks });
    const v = computeValues({ at: 0, vms: new Map(), host: host(s1) }, { at: 1000, vms: new Map(), host: host(s2) }).host;
    assert.deepEqual(v.get('CPUAverageUsedUtilization'), [{ labels: {}, value: 20 }]);
    assert.deepEqual(v.get('CPUUsedUtilization')!.map((p) => p.value), [100, 11.11]);
    assert.deepEqual(v.get('MemoryUsedInPercent'), [{ labels: {}, value: 75 }]);
  });

  it('maps ZStack names to Prometheus names and back', () => {
    assert.equal(promName('ZStack/VM', 'CPUAverageUsedUtilization'), 'ZStack_VM_CPUAverageUsedUtilization');
    assert.deepEqual(fromPromName('ZStack_Host_MemoryUsedBytes'), { namespace: 'ZStack/Host', metricName: 'MemoryUsedBytes' });
    assert.equal(fromPromName('tstack_http_requests_total'), undefined);
    assert.throws(() => promName('ZStack/Nope', 'X'));
  });

  it('the collector exports the fake driver\'s VMs under ZStack names', async () => {
    const driver = new FakeDriver();
    await driver.defineAndStart(`<domain type='qemu'><name>tstack-${U}</name><uuid>${U}</uuid><memory unit='KiB'>131072</memory><vcpu>2</vcpu></domain>`, `tstack-${U}`);
    const reg = new client.Registry();
    const c = new MetricsCollector(driver, reg, { intervalMs: 60_000 });
    await c.sample();
    await new Promise((r) => setTimeout(r, 1100));
    await c.sample();
    const text = await reg.metrics();
    assert.match(text, new RegExp(`ZStack_VM_CPUAverageUsedUtilization\\{VMUuid="${U}"\\} 5`));
    assert.match(text, /ZStack_VM_CPUUsedUtilization\{VMUuid="[^"]+",CPUNum="1"\}/);
    assert.match(text, /ZStack_Host_MemoryUsedInPercent \d/);
    assert.match(text, /ZStack_Host_CPUAverageUsedUtilization \d/);
  });
});
