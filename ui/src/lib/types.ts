// Resource and collection types: the controller's own definitions (type-only imports, erased
// from the bundle), so the console and the API cannot drift apart silently.
export type { Resource } from '../../../controller/store/types.js';
export type { CliCollection } from '../../../controller/api/openapi.js';
export type { Dependent } from '../../../controller/model/cascade.js';
export type { JobView } from '../../../controller/jobs/jobs.js';

/** A JSON schema node as /v1/openapi.json has it (TypeBox output). */
export interface JsonSchema {
  type?: string | string[];
  $ref?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  description?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  format?: string;
  default?: unknown;
}
