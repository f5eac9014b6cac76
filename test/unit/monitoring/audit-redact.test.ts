// Audit: redaction of request bodies and naming of API calls (pure functions).
import assert from 'node:assert/strict';
import { describeCall, redact, REDACTED } from '../../../controller/audit/index.js';

describe('audit: redaction', () => {
  it('replaces secrets at any depth and keeps everything else', () => {
    const body = {
      name: 'vm1',
      password: 'hunter22',
      sshKey: 'ssh-ed25519 AAAA',
      userData: '#cloud-config',
      nested: { sshPrivateKey: '-----BEGIN', oldPassword: 'x', token: 't', keep: 1 },
      list: [{ apiKey: 'k', labels: [{ key: 'VMUuid', op: 'Equal', value: 'u' }] }],
    };
    const r = redact(body) as typeof body;
    assert.equal(r.name, 'vm1');
    assert.equal(r.password, REDACTED);
    assert.equal(r.sshKey, REDACTED);
    assert.equal(r.userData, REDACTED);
    assert.deepEqual(r.nested, { sshPrivateKey: REDACTED, oldPassword: REDACTED, token: REDACTED, keep: 1 });
    assert.equal(r.list[0]!.apiKey, REDACTED);
    // an alarm's label {key, value} is not a secret
    assert.deepEqual(r.list[0]!.labels, [{ key: 'VMUuid', op: 'Equal', value: 'u' }]);
    assert.equal(body.password, 'hunter22', 'the input is not changed');
  });

  it('cuts long strings and deep structures', () => {
    const r = redact({ description: 'x'.repeat(5000) }) as { description: string };
    assert.ok(r.description.length < 2100 && r.description.endsWith('(5000 chars)'));
    let deep: unknown = 'leaf';
    for (let i = 0; i < 20; i++) deep = { d: deep };
    assert.ok(JSON.stringify(redact(deep)).includes('…'));
  });
});

describe('audit: naming calls', () => {
  it('names verbs and actions after the collection', () => {
    assert.deepEqual(describeCall('POST', '/v1/vm-instances', { name: 'a' }), { apiName: 'vm-instances.create', resourceType: 'vm-instances' });
    assert.deepEqual(describeCall('POST', '/v1/vm-instances/u1/actions', { stop: {} }), { apiName: 'vm-instances.stop', resourceType: 'vm-instances', resourceUuid: 'u1' });
    assert.equal(describeCall('PATCH', '/v1/zones/u2', {}).apiName, 'zones.update');
    assert.equal(describeCall('DELETE', '/v1/zones/u2', undefined).apiName, 'zones.delete');
    assert.equal(describeCall('POST', '/v1/sessions', {}).apiName, 'sessions.login');
    assert.equal(describeCall('POST', '/v1/x/y/z/w', {}).apiName, 'POST /v1/x/y/z/w');
  });
});
