// What the API (routes, OpenAPI, CLI) needs to know about one resource kind.
import { Type, type TSchema } from '../../shared/protocol/schema.js';
import type { TObject } from '@sinclair/typebox';
import type { InventoryStore, Resource } from '../store/types.js';

/** A field of a create body that references another resource. */
export interface RefDef {
  field: string;
  kind: string;
  /** The field holds a list of uuids. */
  many?: boolean;
}

export interface ActionDef {
  schema: TObject;
  /** Runs a workflow (agents involved): the API answers 202 + job unless ?wait=true. */
  async: boolean;
  description: string;
}

/** Everything a create needs to finish the resource (what prepareCreate hands to hooks). */
export interface CreateContext {
  store: InventoryStore;
  /** The referenced resources, by field (for `many` refs: the first one). */
  refs: Record<string, Resource>;
}

export interface KindDef {
  /** Singular kind stored in Resource.kind, e.g. 'vm-instance'. */
  kind: string;
  /** REST collection, e.g. 'vm-instances' (/v1/vm-instances). */
  collection: string;
  /** Human name for docs/CLI, e.g. 'VM instance'. */
  title: string;
  createSchema: TObject;
  updateSchema: TObject;
  /** Create-body field whose value becomes parentUuid (zoneUuid for a cluster…). */
  parentField?: string;
  parentKind?: string;
  refs: RefDef[];
  /** state values (the admin-controlled or lifecycle state); empty if the kind has none. */
  states: readonly string[];
  initialState?: string;
  /** status values (connection/readiness tracked by the system), if any. */
  statuses?: readonly string[];
  initialStatus?: string;
  /**
   * Only the admin may create/update/delete it (infrastructure; everyone may reference it),
   * or only these verbs (accounts: create and delete).
   */
  adminOnly: boolean | Array<'create' | 'update' | 'delete'>;
  /**
   * 'sync': created in the inventory directly (201). 'async': the API starts a workflow and
   * answers 202 + job. 'none': not creatable through its collection (made by other operations,
   * e.g. VM NICs by creating a VM or an attachL3Network action).
   */
  createMode: 'sync' | 'async' | 'none';
  /** DELETE needs a workflow (agents must remove something); 'none': never deleted (global configs). */
  deleteMode: 'sync' | 'async' | 'none';
  actions: Record<string, ActionDef>;
  /** Create-body fields that must never be stored or returned (passwords). */
  secretFields?: string[];
  /** Fields set by the system that a create/update body may not set (documented for OpenAPI). */
  systemFields?: string[];
  /** Defaults applied to create bodies. */
  defaults?: Record<string, unknown>;
  /**
   * Scalar fields that lists filter on (beyond the common columns and INDEXED_FIELDS): the
   * stores index them (controller/model/indexes.ts), so such a filter never reads the whole kind.
   */
  indexes?: readonly string[];
  /**
   * Field combinations that lists filter on together, each `=` a text (the VMs of a host in a
   * state): the Redis store keeps a set per combination of values (controller/store/indexes.ts).
   */
  compoundIndexes?: ReadonlyArray<readonly string[]>;
  /** Extra cross-field checks of a create body (after schema validation). Throw invalid(field). */
  check?(body: Record<string, unknown>): void;
  /** Derive / normalise stored fields once refs are resolved (e.g. zoneUuid of a host). */
  normalize?(body: Record<string, unknown>, ctx: CreateContext): Record<string, unknown> | Promise<Record<string, unknown>>;
}

const STATE_EVENTS = ['enable', 'disable'] as const;
export const changeStateAction = (events: readonly string[] = STATE_EVENTS): ActionDef => ({
  schema: Type.Object({ stateEvent: Type.Union(events.map((e) => Type.Literal(e))) }, { additionalProperties: false }),
  async: false,
  description: `Change the state: ${events.join(', ')}`,
});

export const emptyAction = (description: string, async = true): ActionDef => ({
  schema: Type.Object({}, { additionalProperties: false }),
  async,
  description,
});

export function action(schema: TObject, description: string, async = true): ActionDef {
  return { schema, async, description };
}

export type { TSchema };
