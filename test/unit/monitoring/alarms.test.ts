// Alarm PromQL and judgement, metric selectors, Prometheus targets and config (pure).
import assert from 'node:assert/strict';
import { alarmQuery, judge } from '../../../controller/monitoring/alarms.js';
import { parseLabels, selector } from '../../../controller/monitoring/metrics-api.js';
import { renderConfig, targetsOf } from '../../../controller/monitoring/prometheus.js';
import { prometheusFromEnv } from '../../../controller/monitoring/module.js';
import type { Resource } from '../../../controller/store/types.js';

const alarm = (f: Record<string, unknown>): Resource => ({ uuid: 'a1', kind: 'alarm', name: 'cpu', createDate: '', lastOpDate: '', ownerAccountUuid: 'x', tags: [], namespace: 'ZStack/VM', metricName: 'CPUAverageUsedUtilization', comparisonOperator: 'GreaterThan', threshold: 30, period: 60, ...f });
const U = '8ab86837-d48a-4853-b400-3bfbeda32b84';

describe('monitoring: alarms and PromQL', () => {
  it('builds the query: the condition must hold for the whole period', () => {
    assert.equal(alarmQuery(alarm({ labels: [{ key: 'VMUuid', op: 'Equal', value: 'u"1' }] })), 'min_over_time(ZStack_VM_CPUAverageUsedUtilization{VMUuid="u\\"1"}[60s])');
    assert.equal(alarmQuery(alarm({ comparisonOperator: 'LessThan', labels: [{ key: 'VMUuid', op: 'Regex', value: 'a|b' }] })), 'max_over_time(ZStack_VM_CPUAverageUsedUtilization{VMUuid=~"a|b"}[60s])');
  });

  it('judges Alarm, OK and InsufficientData', () => {
    const r = (v: string) => ({ metric: { VMUuid: 'u' }, value: [0, v] as [number, string] });
    assert.deepEqual(judge(alarm({}), []), { status: 'InsufficientData' });
    assert.equal(judge(alarm({}), [r('10'), r('31')]).status, 'Alarm');
    assert.equal(judge(alarm({}), [r('30')]).status, 'OK');
    assert.equal(judge(alarm({ comparisonOperator: 'GreaterThanOrEqualTo' }), [r('30')]).status, 'Alarm');
    assert.equal(judge(alarm({ comparisonOperator: 'LessThanOrEqualTo' }), [r('30')]).status, 'Alarm');
  });

  it('refuses bad label names and namespaces in selectors', () => {
    assert.throws(() => selector({ namespace: 'ZStack/VM', metricName: 'X', labels: [{ key: 'a-b', op: '=', value: '1' }] }), /not a label name/);
    assert.throws(() => selector({ namespace: 'ZStack/Nope', metricName: 'X', labels: [] }), /namespace/);
    assert.deepEqual(parseLabels(['VMUuid=a,CPUNum=0']), [{ key: 'VMUuid', op: '=', value: 'a' }, { key: 'CPUNum', op: '=', value: '0' }]);
    assert.throws(() => parseLabels('nokey'));
  });

  it('scrapes connected hosts only, with valid addresses; a job per host and agent (kvmagent, vrouteragent)', () => {
    const h = (f: Record<string, unknown>): Resource => ({ uuid: U, kind: 'host', name: 'h', createDate: '', lastOpDate: '', ownerAccountUuid: 'x', tags: [], status: 'Connected', managementIp: '10.0.0.1', _agents: { kvmagent: { port: 7070, token: 't' }, vrouteragent: { port: 7272, token: 'v' }, storageagent: { port: 7171, token: 's' } }, ...f });
    assert.deepEqual(targetsOf([h({})]), [
      { hostUuid: U, agent: 'kvmagent', address: '10.0.0.1:7070', token: 't' },
      { hostUuid: U, agent: 'vrouteragent', address: '10.0.0.1:7272', token: 'v' },
    ]);
    assert.equal(targetsOf([h({ status: 'Disconnected' })]).length, 0);
    assert.equal(targetsOf([h({ managementIp: '1.2.3.4\nx' })]).length, 0);
    assert.deepEqual(targetsOf([h({ _agents: { kvmagent: { port: 7070, token: 't' } } })]).map((t) => t.agent), ['kvmagent'], 'a host without a vrouteragent token: kvmagent only');
    const y = renderConfig('/d/prometheus', [U, `${U}-vrouteragent`], '15s');
    assert.match(y, new RegExp(`job_name: kvmagent-${U}`));
    assert.match(y, new RegExp(`credentials_file: "/d/prometheus/tokens/${U}"`));
    assert.match(y, new RegExp(`job_name: vrouteragent-${U}\n`));
    assert.match(y, new RegExp(`credentials_file: "/d/prometheus/tokens/${U}-vrouteragent"`));
    assert.match(y, new RegExp(`files: \\["/d/prometheus/targets/${U}-vrouteragent.json"\\]`));
    assert.throws(() => renderConfig('/d', ['../x'], '15s'), /not a scrape target key/);
    assert.match(renderConfig('/d', [], '15s'), /scrape_configs:\n {2}\[\]/);
  });

  it('reads TSTACK_PROMETHEUS', () => {
    assert.equal(prometheusFromEnv(undefined), false);
    assert.deepEqual(prometheusFromEnv('start:9191'), { port: 9191 });
    assert.deepEqual(prometheusFromEnv('http://10.0.0.5:9090'), { url: 'http://10.0.0.5:9090' });
    assert.throws(() => prometheusFromEnv('yes'));
  });
});
