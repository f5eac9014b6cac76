// /v1/audits in the OpenAPI document (the routes are served by ./http.ts, not by a collection).
import { jsonSchema } from '../../shared/protocol/schema.js';
import { err, listParams } from '../api/openapi.js';
import type { RouteDocs } from '../api/registry.js';
import { AuditView } from './http.js';

const q = (name: string, description: string) => ({ name, in: 'query', required: false, schema: { type: 'string' }, description });

export const AUDIT_ROUTE_DOCS: RouteDocs = {
  schemas: {
    AuditRecord: {
      ...jsonSchema(AuditView),
      description: 'one mutating API call: what, on which resource, who, from where, when, how long (ms), the outcome',
      properties: {
        ...(jsonSchema(AuditView) as { properties: Record<string, unknown> }).properties,
        result: { type: 'string', enum: ['Succeeded', 'Failed', 'Accepted'], description: 'Accepted: a long operation whose job has not ended yet' },
        requestBody: { description: 'the request body, secrets (passwords, keys, user-data) replaced by "***"' },
      },
    },
  },
  paths: {
    '/v1/audits': {
      get: {
        tags: ['audits'],
        operationId: 'list-audits',
        summary: 'the audit log (newest first); a normal account sees only its own records',
        parameters: [
          ...listParams,
          q('resourceUuid', 'records about this resource'),
          q('accountUuid', 'records of this account'),
          q('since', 'ISO 8601 date or epoch ms: records created at or after it'),
          q('until', 'ISO 8601 date or epoch ms: records created at or before it'),
        ],
        responses: {
          200: { description: '{inventories, total} (or {total} with count=true)', content: { 'application/json': { schema: { type: 'object', properties: { inventories: { type: 'array', items: { $ref: '#/components/schemas/AuditRecord' } }, total: { type: 'integer' } } } } } },
          400: err('bad query'),
        },
      },
    },
    '/v1/audits/{uuid}': {
      get: {
        tags: ['audits'],
        operationId: 'get-audit',
        parameters: [{ name: 'uuid', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { 200: { description: 'the record', content: { 'application/json': { schema: { $ref: '#/components/schemas/AuditRecord' } } } }, 404: err('not found (or not yours)') },
      },
    },
  },
};
