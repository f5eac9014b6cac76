// The resource model: kinds (schemas, states, parents, actions), attachments, cascade rules.
export * from './kind.js';
export * from './states.js';
export { resourceKinds, kindDef, mustKindDef, prepareCreate, recheckUse, validateUpdate, validateAction, validateBody, type CreateOptions, type PreparedCreate } from './registry.js';
export * from './attachments.js';
export * from './cascade.js';
