// The policy action table (controller/identity/policy.ts) against the OpenAPI document of a
// controller with every builtin module: every endpoint maps to an action name policies can
// name (or is one of the few open ones: login, logout, agents, health), so no endpoint is left
// unguarded; and the Allow/Deny rules.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { builtinModules } from '../../../controller/main.js';
import { actionMatches, decide, requestAction } from '../../../controller/identity/policy.js';
import { testController } from '../../harness/controller.js';
import { useCleanup } from '../../harness/cleanup.js';

const OPEN = new Set(['GET /health', 'GET /metrics', 'GET /v1/openapi.json', 'POST /v1/sessions', 'DELETE /v1/sessions/current', 'POST /v1/agent-callbacks', 'POST /v1/agent-events']);

describe('identity: the policy action table covers every endpoint of OpenAPI', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');

  it('every path and method (and every action) maps to <collection>:<verb|action> or is a known open endpoint', async function () {
    const reg = new ApiRegistry();
    const c = await testController(cleanup, { modules: builtinModules(), registry: reg });
    const doc = (await c.anon.get('/v1/openapi.json')).body;
    const collections = new Set(reg.collections().map((s) => s.collection));
    assert.ok(collections.has('users') && collections.has('policies') && collections.has('user-groups'));
    const actionsOf = new Map<string, string[]>((doc['x-tstack-collections'] as Array<{ collection: string; actions: Array<{ name: string }> }>).map((x) => [x.collection, x.actions.map((a) => a.name)]));
    const problems: string[] = [];
    let n = 0;
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(ops).map((m) => m.toUpperCase())) {
        const col = path.split('/')[2]!;
        const real = path.replace('{uuid}', randomUUID());
        const bodies = path.endsWith('/actions') ? (actionsOf.get(col) ?? []).map((a) => ({ [a]: {} })) : [{}];
        for (const body of bodies) {
          n++;
          const ra = requestAction(method, real, body, collections);
          const what = `${method} ${path} ${JSON.stringify(body)}`;
          if (!ra) problems.push(`${what}: no action`);
          else if ('open' in ra) {
            if (!OPEN.has(`${method} ${path}`)) problems.push(`${what}: open`);
          } else {
            const [rc, ra2] = ra.action.split(':');
            if (!rc || !ra2 || ra2 === '?') problems.push(`${what}: malformed ${ra.action}`);
            if (method === 'GET' && ra2 !== 'read') problems.push(`${what}: a GET must be a read, got ${ra.action}`);
            if (method !== 'GET' && ra2 === 'read') problems.push(`${what}: a ${method} must not be a read`);
          }
        }
      }
    }
    assert.ok(n > 100, `only ${n} operations`);
    assert.deepEqual(problems, []);
  });

  it('derives names from collections and actions; unknown mutations are unmapped (denied)', function () {
    const cols = new Set(['vm-instances', 'volumes']);
    const u = randomUUID();
    assert.deepEqual(requestAction('GET', '/v1/vm-instances', undefined, cols), { action: 'vm-instances:read' });
    assert.deepEqual(requestAction('POST', `/v1/vm-instances/${u}/actions`, { stop: {} }, cols), { action: 'vm-instances:stop', resourceUuid: u });
    assert.deepEqual(requestAction('DELETE', `/v1/volumes/${u}`, undefined, cols), { action: 'volumes:delete', resourceUuid: u });
    assert.deepEqual(requestAction('PATCH', `/v1/volumes/${u}`, {}, cols), { action: 'volumes:update', resourceUuid: u });
    assert.equal(requestAction('POST', '/v1/nonsense', {}, cols), undefined);
    assert.equal(requestAction('DELETE', '/v1/vm-instances', {}, cols), undefined);
    assert.deepEqual(requestAction('POST', `/v1/vm-instances/${u}/actions`, { a: {}, b: {} }, cols), { action: 'vm-instances:?', resourceUuid: u });
  });

  it('Deny wins; Allow grants; with no policy only reads; resources narrow a statement', function () {
    assert.ok(actionMatches('vm-instances:*', 'vm-instances:stop'));
    assert.ok(actionMatches('*:read', 'volumes:read'));
    assert.ok(!actionMatches('*:read', 'volumes:delete'));
    assert.ok(!actionMatches('vm-instances:stop', 'vm-instances:start'));
    assert.deepEqual(decide([], 'vm-instances:read'), { allowed: true, by: 'default-read' });
    assert.equal(decide([], 'vm-instances:stop').allowed, false);
    assert.equal(decide([{ effect: 'Allow', actions: ['vm-instances:*'] }], 'vm-instances:stop').allowed, true);
    assert.equal(decide([{ effect: 'Allow', actions: ['*'] }, { effect: 'Deny', actions: ['vm-instances:stop'] }], 'vm-instances:stop').allowed, false);
    assert.equal(decide([{ effect: 'Deny', actions: ['*:read'] }], 'volumes:read').allowed, false);
    const vm = randomUUID();
    assert.equal(decide([{ effect: 'Allow', actions: ['vm-instances:stop'], resources: [vm] }], 'vm-instances:stop', vm).allowed, true);
    assert.equal(decide([{ effect: 'Allow', actions: ['vm-instances:stop'], resources: [vm] }], 'vm-instances:stop', randomUUID()).allowed, false);
  });
});
