// Monitoring and notifications (manual: 资源报警器, 事件报警器, 通知/SNS): SNS topics and
// endpoints, the deliveries of their messages, event subscriptions and metric alarms. The
// behaviour lives in controller/sns and controller/monitoring; this is what the API validates.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate, Enum, Url, Uuid } from './fields.js';
import { action, changeStateAction, type KindDef } from './kind.js';
import { ENABLED_STATES } from './states.js';

export const SNS_ENDPOINT_TYPES = ['HTTP', 'Email'] as const;
export const DELIVERY_STATES = ['Pending', 'Sending', 'Succeeded', 'Failed'] as const;
export const ALARM_STATUSES = ['OK', 'Alarm', 'InsufficientData'] as const;
export const COMPARISON_OPERATORS = ['GreaterThan', 'GreaterThanOrEqualTo', 'LessThan', 'LessThanOrEqualTo'] as const;
export const LABEL_OPS = ['Equal', 'NotEqual', 'Regex'] as const;
export const METRIC_NAMESPACES = ['ZStack/VM', 'ZStack/Host', 'ZStack/L3Network', 'ZStack/VRouter', 'ZStack/VIP', 'ZStack/PrimaryStorage', 'ZStack/BackupStorage'] as const;

/** Event name → its namespace (what an event subscription may ask for). */
export const EVENT_NAMESPACES: Readonly<Record<string, string>> = {
  VmStateChanged: 'ZStack/VM',
  VmHaStarted: 'ZStack/VM',
  HostStatusChanged: 'ZStack/Host',
  PrimaryStorageLowCapacity: 'ZStack/PrimaryStorage',
  JobFailed: 'ZStack/System',
};

const Label = () => Obj({ key: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), op: Type.Optional(Enum(LABEL_OPS)), value: Type.String({ maxLength: 256 }) });
const Labels = () => Type.Array(Label(), { maxItems: 16 });
const Actions = () => Type.Array(Obj({ actionType: Type.Literal('sns'), actionUuid: Uuid() }), { maxItems: 16 });
const Template = () => Type.String({ minLength: 1, maxLength: 4096, description: 'message text with ${VARIABLE}s (docs/monitoring.md)' });
const Email = () => Type.String({ minLength: 3, maxLength: 254, pattern: '^[^\\s@<>,;"]+@[A-Za-z0-9.-]+$' });

/** A Regex label must compile (checked at create/update, not at the first evaluation). */
export function checkLabels(labels: unknown, field = 'labels'): void {
  if (!Array.isArray(labels)) return;
  labels.forEach((l: { op?: string; value: string }, i) => {
    if (l.op !== 'Regex') return;
    try {
      new RegExp(l.value);
    } catch (e) {
      throw invalid(`${field}.${i}.value`, `not a valid regular expression: ${(e as Error).message}`);
    }
  });
}

export const snsTopic: KindDef = {
  kind: 'sns-topic',
  collection: 'sns-topics',
  title: 'SNS topic',
  createSchema: Obj({ ...baseCreate() }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['endpointUuids'],
  defaults: { endpointUuids: [] },
  actions: {
    changeState: changeStateAction(),
    subscribe: action(Obj({ endpointUuid: Uuid() }), 'Subscribe an endpoint: messages to the topic go to it', false),
    unsubscribe: action(Obj({ endpointUuid: Uuid() }), 'Unsubscribe an endpoint', false),
  },
};

export const snsEndpoint: KindDef = {
  kind: 'sns-endpoint',
  collection: 'sns-endpoints',
  title: 'SNS endpoint',
  createSchema: Obj({
    ...baseCreate(),
    type: Enum(SNS_ENDPOINT_TYPES),
    url: Type.Optional(Url()),
    email: Type.Optional(Email()),
    username: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'HTTP basic auth (never shown)' })),
  }),
  updateSchema: Obj({ ...baseUpdate(), url: Type.Optional(Url()), email: Type.Optional(Email()) }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  secretFields: ['password'],
  check: (b) => {
    if (b.type === 'HTTP') {
      if (typeof b.url !== 'string' || !/^https?:\/\/[^\s/]+/.test(b.url)) throw invalid('url', 'an HTTP endpoint needs an http:// or https:// url');
      if (b.email !== undefined) throw invalid('email', 'only Email endpoints have an email');
    } else {
      if (typeof b.email !== 'string') throw invalid('email', 'an Email endpoint needs an email address');
      if (b.url !== undefined) throw invalid('url', 'only HTTP endpoints have a url');
    }
  },
  actions: { changeState: changeStateAction() },
};

export const snsDelivery: KindDef = {
  kind: 'sns-delivery',
  collection: 'sns-deliveries',
  title: 'SNS delivery',
  createSchema: Obj({}),
  updateSchema: Obj({}),
  refs: [],
  states: DELIVERY_STATES,
  initialState: 'Pending',
  adminOnly: ['update'],
  createMode: 'none',
  deleteMode: 'sync',
  systemFields: ['topicUuid', 'endpointUuid', 'subject', 'message', 'payload', 'attempts', 'lastError', 'nextAttemptAt', 'sourceType', 'sourceUuid'],
  actions: {},
};

export const eventSubscription: KindDef = {
  kind: 'event-subscription',
  indexes: ['eventName'],
  collection: 'event-subscriptions',
  title: 'event subscription',
  createSchema: Obj({
    ...baseCreate(),
    namespace: Type.String({ minLength: 1, maxLength: 64 }),
    eventName: Enum(Object.keys(EVENT_NAMESPACES)),
    labels: Type.Optional(Labels()),
    actions: Actions(),
    messageTemplate: Type.Optional(Template()),
  }),
  updateSchema: Obj({ ...baseUpdate(), labels: Type.Optional(Labels()), actions: Type.Optional(Actions()), messageTemplate: Type.Optional(Template()) }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { labels: [] },
  check: (b) => {
    const ns = EVENT_NAMESPACES[String(b.eventName)];
    if (b.namespace !== ns) throw invalid('namespace', `event ${String(b.eventName)} is in namespace ${ns}`);
    checkLabels(b.labels);
  },
  actions: { changeState: changeStateAction() },
};

export const alarm: KindDef = {
  kind: 'alarm',
  collection: 'alarms',
  title: 'alarm',
  createSchema: Obj({
    ...baseCreate(),
    namespace: Enum(METRIC_NAMESPACES),
    metricName: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z][A-Za-z0-9]*$' }),
    comparisonOperator: Enum(COMPARISON_OPERATORS),
    threshold: Type.Number(),
    period: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400, description: 'seconds the condition must hold' })),
    repeatInterval: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 86_400, description: 'seconds between repeated notifications while in Alarm' })),
    labels: Type.Optional(Labels()),
    actions: Type.Optional(Actions()),
    enableRecovery: Type.Optional(Type.Boolean()),
    messageTemplate: Type.Optional(Template()),
  }),
  updateSchema: Obj({
    ...baseUpdate(),
    comparisonOperator: Type.Optional(Enum(COMPARISON_OPERATORS)),
    threshold: Type.Optional(Type.Number()),
    period: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
    repeatInterval: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 86_400 })),
    labels: Type.Optional(Labels()),
    actions: Type.Optional(Actions()),
    enableRecovery: Type.Optional(Type.Boolean()),
    messageTemplate: Type.Optional(Template()),
  }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  statuses: ALARM_STATUSES,
  initialStatus: 'InsufficientData',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['status', 'history', 'currentValue', 'lastTransitionDate', 'lastNotifyDate'],
  defaults: { period: 60, repeatInterval: 1800, labels: [], actions: [], enableRecovery: false, history: [] },
  check: (b) => checkLabels(b.labels),
  actions: { changeState: changeStateAction() },
};
