// API handlers of the notification kinds (model: controller/model/monitoring.ts): endpoints
// keep their password internal, topics (un)subscribe endpoints, alarms and event
// subscriptions may only name topics the caller can use, and all four change state.
// Handlers use the request's store (the registry may serve several controllers in a test).
import { TStackError, invalid } from '../../shared/errors.js';
import type { Resource } from '../store/types.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import { canUse, canWrite } from '../api/crud.js';
import { kindDef, prepareCreate } from '../model/index.js';
import { checkLabels } from '../model/monitoring.js';
import { secretBoxFor } from '../auth/secret-box.js';
import { sealedPassword } from './endpoint-secret.js';

type Actions = Array<{ actionType: string; actionUuid: string }>;

async function checkActions(oc: OpContext, actions: unknown, field = 'actions'): Promise<void> {
  if (!Array.isArray(actions)) return;
  for (const [i, a] of (actions as Actions).entries()) {
    const t = await oc.store.get(a.actionUuid);
    if (!t || t.kind !== 'sns-topic' || !canUse(oc, t)) throw invalid(`${field}.${i}.actionUuid`, `no SNS topic ${a.actionUuid}`);
  }
}

async function create(collection: string, body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const def = kindDef(collection === 'alarms' ? 'alarm' : collection === 'event-subscriptions' ? 'event-subscription' : 'sns-endpoint')!;
  const p = await prepareCreate(oc.store, def, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
  await checkActions(oc, p.resource.actions);
  // the endpoint's basic-auth password is needed to deliver: sealed, internal, never shown
  if (typeof p.secrets.password === 'string') Object.assign(p.resource, sealedPassword(secretBoxFor(oc.dataDir), p.resource.uuid, p.secrets.password));
  return oc.store.create(p.resource);
}

async function update(r: Resource, body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  checkLabels(body.labels);
  await checkActions(oc, body.actions);
  if (Object.keys(body).length === 0) return r;
  return oc.store.update(r.uuid, body);
}

async function subscription(topic: Resource, endpointUuid: string, on: boolean, oc: OpContext): Promise<Resource> {
  const ep = await oc.store.get(endpointUuid);
  if (!ep || ep.kind !== 'sns-endpoint' || !canWrite(oc.principal, ep)) throw invalid('endpointUuid', `no SNS endpoint ${endpointUuid}`);
  const cur = await oc.store.get(topic.uuid);
  if (!cur) throw new TStackError('NOT_FOUND', `sns-topic ${topic.uuid} not found`);
  const list = ((cur.endpointUuids as string[] | undefined) ?? []).filter((u) => u !== endpointUuid);
  if (on) list.push(endpointUuid);
  return oc.store.update(topic.uuid, { endpointUuids: list });
}

export function registerSnsApi(reg: ApiRegistry): void {
  for (const c of ['sns-endpoints', 'alarms', 'event-subscriptions']) reg.setCreate(c, { run: (body, oc) => create(c, body, oc) });
  for (const c of ['alarms', 'event-subscriptions']) reg.setUpdate(c, { run: (r, body, oc) => update(r, body, oc) });
  const act = (c: string, name: string, run: NonNullable<Parameters<ApiRegistry['registerAction']>[2]['run']>): void => {
    if (!reg.action(c, name)?.run) reg.registerAction(c, name, { run });
  };
  for (const c of ['sns-topics', 'sns-endpoints', 'alarms', 'event-subscriptions']) {
    act(c, 'changeState', (r, p, oc) => oc.store.update(r.uuid, { state: p.stateEvent === 'disable' ? 'Disabled' : 'Enabled' }));
  }
  act('sns-topics', 'subscribe', (r, p, oc) => subscription(r, String(p.endpointUuid), true, oc));
  act('sns-topics', 'unsubscribe', (r, p, oc) => subscription(r, String(p.endpointUuid), false, oc));
}

