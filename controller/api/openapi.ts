// The OpenAPI 3.1 document at /v1/openapi.json, generated from the same TypeBox schemas that
// validate requests. `x-tstack-collections` summarises collections and actions for the CLI.
import type { TSchema } from '@sinclair/typebox';
import { LOWER_UUID_PATTERN, jsonSchema } from '../../shared/protocol/schema.js';
import { SessionCreate } from '../auth/accounts.js';
import type { ApiRegistry } from './registry.js';

const pascal = (s: string): string => s.replace(/(^|-)([a-z0-9])/g, (_, __, c: string) => c.toUpperCase());

export interface CliCollection {
  collection: string;
  kind: string;
  description?: string;
  parentField?: string;
  create?: { schema: string; long: boolean };
  update: { schema: string; long: boolean };
  /** Absent: the collection's delete is not served (an async delete nobody handles yet). */
  delete?: { long: boolean };
  actions: Array<{ name: string; schema: string; long: boolean; description?: string }>;
}

export const err = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const json = (ref: string, description: string) => ({ description, content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });
const accepted = json('JobAccepted', 'long operation started: poll the job at `location` (or call with ?wait=true)');
const cascadeParam = {
  name: 'cascade',
  in: 'query',
  required: false,
  schema: { type: 'string', enum: ['true', 'false'] },
  description: 'also delete the infrastructure below it (clusters and hosts of a zone, L3 networks of an L2…); VMs, volumes and NICs in use still refuse the delete',
};
const waitParam = { name: 'wait', in: 'query', required: false, schema: { type: 'string', enum: ['true', 'false'] }, description: 'block until the job ends; answer 200 with the result or the error' };
const uuidParam = { name: 'uuid', in: 'path', required: true, schema: { type: 'string' } };
export const listParams = [
  { name: 'q', in: 'query', required: false, style: 'form', explode: true, schema: { type: 'array', items: { type: 'string' } }, description: 'filter field<op>value; ops = != > < >= <= ~= (like, % and _) ?= (in, comma list); repeat to AND' },
  { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 0, maximum: 10000, default: 1000 } },
  { name: 'start', in: 'query', required: false, schema: { type: 'integer', minimum: 0, default: 0 } },
  { name: 'sort', in: 'query', required: false, schema: { type: 'string' }, description: '+field (ascending; %2B in a URL) or -field' },
  { name: 'count', in: 'query', required: false, schema: { type: 'string', enum: ['true', 'false'] }, description: 'answer only {total}' },
  { name: 'fields', in: 'query', required: false, schema: { type: 'string' }, description: 'comma-separated fields to return' },
];

/** A collection's list also takes replyWithCount (controller/api/query.ts). */
const collectionListParams = [...listParams, { name: 'replyWithCount', in: 'query', required: false, schema: { type: 'string', enum: ['true', 'false'], default: 'true' }, description: 'false: no total in the page (the count of every match is skipped)' }];

export function buildOpenApi(reg: ApiRegistry, version: string): Record<string, unknown> {
  const schemas: Record<string, unknown> = {
    Error: {
      type: 'object',
      required: ['code', 'kind', 'message'],
      properties: {
        code: { type: 'string' },
        kind: { type: 'string', enum: ['retryable', 'permanent', 'conflict', 'not-found'], description: 'retryable: may succeed later; permanent: will not until the request changes; conflict: the state forbids it now; not-found' },
        message: { type: 'string' }, field: { type: 'string', description: 'the offending request field, when there is one' }, details: { type: 'object' } },
    },
    JobAccepted: { type: 'object', required: ['jobUuid', 'location'], properties: { jobUuid: { type: 'string' }, location: { type: 'string' } } },
    Job: {
      type: 'object',
      required: ['uuid', 'state'],
      properties: {
        uuid: { type: 'string' },
        type: { type: 'string' },
        state: { type: 'string', enum: ['Running', 'Succeeded', 'Failed'] },
        progress: { type: 'integer', minimum: 0, maximum: 100 },
        message: { type: 'string' },
        result: {},
        error: { $ref: '#/components/schemas/Error' },
        resourceUuid: { type: 'string' },
        createDate: { type: 'string' },
        lastOpDate: { type: 'string' },
        finishDate: { type: 'string' },
      },
    },
    SessionCreate: jsonSchema(SessionCreate),
    Session: { type: 'object', required: ['token', 'expiresAt'], properties: { token: { type: 'string' }, expiresAt: { type: 'string' }, accountUuid: { type: 'string' } } },
    Resource: {
      type: 'object',
      required: ['uuid', 'kind', 'name', 'createDate', 'lastOpDate', 'ownerAccountUuid'],
      properties: {
        uuid: { type: 'string' },
        kind: { type: 'string' },
        name: { type: 'string' },
        description: { type: 'string' },
        state: { type: 'string' },
        createDate: { type: 'string' },
        lastOpDate: { type: 'string' },
        ownerAccountUuid: { type: 'string' },
        parentUuid: { type: 'string' },
        tags: { type: 'array', items: { type: 'string' } },
      },
      additionalProperties: true,
    },
  };
  const paths: Record<string, unknown> = {
    '/health': { get: { summary: 'liveness (no auth)', security: [], responses: { 200: { description: '{status, version}' } } } },
    '/v1/openapi.json': { get: { summary: 'this document (no auth)', security: [], responses: { 200: { description: 'OpenAPI 3.1' } } } },
    '/v1/sessions': {
      post: {
        summary: 'log in',
        security: [],
        requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/SessionCreate' } } } },
        responses: { 200: json('Session', 'session token'), 400: err('bad body'), 401: err('wrong account name or password') },
      },
    },
    '/v1/sessions/current': { delete: { summary: 'log out', responses: { 204: { description: 'session ended' }, 401: err('no session') } } },
    '/v1/resources': {
      get: {
        tags: ['resources'],
        operationId: 'search-resources',
        summary: 'resources of every collection matching q= on the common fields (uuid, kind, name, state, status, tags, dates…), e.g. q=tags=env::prod; newest first',
        parameters: listParams,
        responses: {
          200: { description: '{inventories, total} (or {total} with count=true); each item shaped as its collection lists it', content: { 'application/json': { schema: { type: 'object', properties: { inventories: { type: 'array', items: { $ref: '#/components/schemas/Resource' } }, total: { type: 'integer' } } } } } },
          400: err('a field outside the common ones, or a bad query'),
        },
      },
    },
    '/v1/jobs': { get: { summary: 'jobs of the caller (admin: all)', responses: { 200: { description: '{inventories: Job[], total}' } } } },
    '/v1/jobs/{uuid}': { get: { summary: 'a job', parameters: [uuidParam], responses: { 200: json('Job', 'the job'), 404: err('no such job') } } },
    '/v1/events': {
      get: {
        summary: 'Server-Sent Events: resource.created|updated|deleted and job.created|progress|finished, filtered to what the caller may see',
        parameters: [
          { name: 'types', in: 'query', required: false, schema: { type: 'string' } },
          { name: 'kinds', in: 'query', required: false, schema: { type: 'string' } },
        ],
        responses: { 200: { description: 'text/event-stream' } },
      },
    },
  };
  const cli: CliCollection[] = [];
  const ref = (name: string, s: TSchema): string => {
    schemas[name] = jsonSchema(s);
    return `#/components/schemas/${name}`;
  };
  for (const c of reg.collections()) {
    const P = pascal(c.kind);
    const tag = c.collection;
    const createRef = reg.canCreate(c) ? ref(`${P}Create`, c.createSchema) : undefined;
    // a resumable create takes the client's resourceUuid (api/app.ts): a repeat answers the first job
    const created = createRef ? (schemas[`${P}Create`] as { properties?: Record<string, unknown> }) : undefined;
    if (created?.properties && c.create?.long === true && c.create.resumable === true) {
      created.properties.resourceUuid = { type: 'string', pattern: LOWER_UUID_PATTERN, description: 'the new resource’s uuid, chosen by the client: the same create sent again answers the first one’s job' };
    }
    const canDelete = reg.canDelete(c);
    const updateRef = ref(`${P}Update`, c.updateSchema);
    const viewRef = c.viewSchema ? ref(P, c.viewSchema) : '#/components/schemas/Resource';
    const one = { description: `the ${c.kind}`, content: { 'application/json': { schema: { $ref: viewRef } } } };
    const col: Record<string, unknown> = {
      get: {
        tags: [tag],
        operationId: `list-${c.collection}`,
        summary: `list ${c.collection}`,
        parameters: collectionListParams,
        responses: {
          200: { description: '{inventories, total} (or {total} with count=true)', content: { 'application/json': { schema: { type: 'object', properties: { inventories: { type: 'array', items: { $ref: viewRef } }, total: { type: 'integer' } } } } } },
          400: err('bad query'),
        },
      },
    };
    if (createRef) {
      const long = c.create?.long === true;
      col.post = {
        tags: [tag],
        operationId: `create-${c.collection}`,
        summary: `create a ${c.kind}${long ? ' (long: a job)' : ''}`,
        parameters: long ? [waitParam] : [],
        requestBody: { required: true, content: { 'application/json': { schema: { $ref: createRef } } } },
        responses: long ? { 202: accepted, 200: one, 400: err('bad body (field names the culprit)'), 409: err('conflict') } : { 201: one, 400: err('bad body (field names the culprit)'), 403: err('admin only'), 409: err('conflict') },
      };
    }
    paths[`/v1/${c.collection}`] = col;
    const upd = {
      tags: [tag],
      parameters: [uuidParam],
      requestBody: { required: true, content: { 'application/json': { schema: { $ref: updateRef } } } },
      responses: { 200: one, 400: err('bad body'), 404: err('not found'), 409: err('conflict') },
    };
    const item: Record<string, unknown> = {
      get: { tags: [tag], operationId: `get-${c.kind}`, parameters: [uuidParam], responses: { 200: one, 404: err('not found (or not yours)') } },
      put: { ...upd, operationId: `update-${c.kind}` },
      patch: { ...upd, operationId: `patch-${c.kind}` },
    };
    if (canDelete) {
      item.delete = {
        tags: [tag],
        operationId: `delete-${c.kind}`,
        parameters: c.remove?.long ? [uuidParam, cascadeParam, waitParam] : [uuidParam, cascadeParam],
        responses: c.remove?.long ? { 202: accepted, 200: one, 404: err('not found'), 409: err('in use') } : { 200: one, 404: err('not found'), 409: err('in use') },
      };
    }
    paths[`/v1/${c.collection}/{uuid}`] = item;
    const acts = reg.actions(c.collection);
    const cliActs: CliCollection['actions'] = [];
    if (acts.length) {
      const variants = acts.map((a) => {
        const r = ref(`${P}Action${pascal(a.name.replace(/[A-Z]/g, (x) => '-' + x.toLowerCase()))}`, a.schema);
        const entry: CliCollection['actions'][number] = { name: a.name, schema: r, long: a.long === true };
        if (a.description !== undefined) entry.description = a.description;
        cliActs.push(entry);
        return { type: 'object', required: [a.name], additionalProperties: false, properties: { [a.name]: { $ref: r } }, description: a.description };
      });
      paths[`/v1/${c.collection}/{uuid}/actions`] = {
        post: {
          tags: [tag],
          operationId: `action-${c.kind}`,
          summary: `one of: ${acts.map((a) => a.name).join(', ')}`,
          parameters: [uuidParam, waitParam],
          requestBody: { required: true, content: { 'application/json': { schema: { oneOf: variants } } } },
          responses: { 200: { description: 'result' }, 202: accepted, 400: err('bad action or parameters'), 404: err('not found'), 409: err('wrong state') },
        },
      };
    }
    const entry: CliCollection = {
      collection: c.collection,
      kind: c.kind,
      update: { schema: updateRef, long: c.update?.long === true },
      actions: cliActs,
    };
    if (canDelete) entry.delete = { long: c.remove?.long === true };
    if (c.description !== undefined) entry.description = c.description;
    if (c.parentField !== undefined) entry.parentField = c.parentField;
    if (createRef) entry.create = { schema: createRef, long: c.create?.long === true };
    cli.push(entry);
  }
  for (const d of reg.routeDocs()) {
    Object.assign(paths, d.paths);
    Object.assign(schemas, d.schemas ?? {});
  }
  return {
    openapi: '3.1.0',
    info: { title: 'tstack API', version, description: 'tstack private cloud REST API. Conventions: docs/api.md.' },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'token from POST /v1/sessions' } }, schemas },
    paths,
    'x-tstack-collections': cli,
  };
}
