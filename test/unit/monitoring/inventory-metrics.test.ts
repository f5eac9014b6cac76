import assert from 'node:assert/strict';
import { capacitySamples, ipSamples, renderSamples } from '../../../controller/monitoring/inventory-metrics.js';
import { renderConfig, selfAddress } from '../../../controller/monitoring/prometheus.js';
import type { Resource } from '../../../controller/store/types.js';

const res = (kind: string, f: Record<string, unknown>): Resource => ({ uuid: 'p1', kind, name: 'x', createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], ...f });

describe('monitoring: the controller\'s inventory metrics', () => {
  it('storage capacity in ZStack names, none before a capacity is known', () => {
    const s = capacitySamples('ZStack/PrimaryStorage', res('primary-storage', { totalCapacity: 1000, availableCapacity: 250 }));
    const v = Object.fromEntries(s.map((x) => [x.metricName, x.value]));
    assert.deepEqual(v, { AvailableCapacityInPercent: 25, AvailableCapacityInBytes: 250, UsedCapacityInPercent: 75, UsedCapacityInBytes: 750, TotalCapacityInBytes: 1000 });
    assert.deepEqual(s[0]!.labels, { PrimaryStorageUuid: 'p1' });
    assert.deepEqual(capacitySamples('ZStack/BackupStorage', res('backup-storage', { totalCapacity: 10, availableCapacity: 5 }))[0]!.labels, { BackupStorageUuid: 'p1' });
    assert.deepEqual(capacitySamples('ZStack/PrimaryStorage', res('primary-storage', {})), []);
    assert.deepEqual(capacitySamples('ZStack/PrimaryStorage', res('primary-storage', { totalCapacity: 0, availableCapacity: 0 })), []);
  });

  it('L3 addresses: used / available / total, percent of the usable ones', () => {
    const v = Object.fromEntries(ipSamples('l3', { total: 3, used: 1, available: 2 }).map((x) => [x.metricName, x.value]));
    assert.deepEqual(v, { UsedIpInPercent: 33.33, UsedIpInNumber: 1, AvailableIpInPercent: 66.67, AvailableIpInNumber: 2, TotalIpInNumber: 3 });
    assert.equal(ipSamples('l3', { total: 0, used: 0, available: 0 })[0]!.value, 0);
  });

  it('renders Prometheus text with escaped labels', async () => {
    const r = await renderSamples(ipSamples('a"b', { total: 4, used: 1, available: 3 }));
    assert.match(r.text, /^ZStack_L3Network_UsedIpInPercent\{L3NetworkUuid="a\\"b"\} 25$/m);
    assert.match(r.contentType, /text\/plain/);
  });

  it('the controller is a scrape job of its own when its URL is host:port', () => {
    const self = selfAddress('http://127.0.0.1:8080');
    assert.deepEqual(self, { scheme: 'http', address: '127.0.0.1:8080' });
    assert.equal(selfAddress('http://x:1/path"'), undefined);
    const y = renderConfig('/d', [], '15s', self);
    assert.match(y, /job_name: tstack-controller\n {4}metrics_path: \/v1\/metrics\/export/);
    assert.match(y, /credentials_file: "\/d\/tokens\/controller"/);
    assert.match(y, /targets: \["127.0.0.1:8080"\]/);
    assert.doesNotMatch(y, /\[\]/);
  });
});
