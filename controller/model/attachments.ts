// Many-to-many attachments (white paper §2.1.2.2.2): cluster ⇄ primary storage, cluster ⇄ L2
// network, zone ⇄ backup storage.
//
// Stored as small resources of their own kind (not REST collections) whose uuid is derived
// from the pair, so attaching twice is a CONFLICT from the store itself (atomic on both
// backends), detaching is a delete, and both directions are plain queries:
//   parentUuid = the cluster/zone (byParent lists a cluster's attachments),
//   <rightField> = the primary storage / L2 / backup storage (query lists its clusters/zones).
// The API shows them as attachedClusterUuids / attachedZoneUuids etc. computed with these helpers.
import { createHash } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore, Resource } from '../store/types.js';

export interface AttachmentDef {
  type: string;
  left: { kind: string; field: string };
  right: { kind: string; field: string };
  /** Both sides must be in the same zone (right side's zone is its parentUuid). */
  sameZone: boolean;
}

export const ATTACHMENTS = {
  'cluster-primary-storage': {
    type: 'cluster-primary-storage',
    left: { kind: 'cluster', field: 'clusterUuid' },
    right: { kind: 'primary-storage', field: 'primaryStorageUuid' },
    sameZone: true,
  },
  'cluster-l2-network': {
    type: 'cluster-l2-network',
    left: { kind: 'cluster', field: 'clusterUuid' },
    right: { kind: 'l2-network', field: 'l2NetworkUuid' },
    sameZone: true,
  },
  'zone-backup-storage': {
    type: 'zone-backup-storage',
    left: { kind: 'zone', field: 'zoneUuid' },
    right: { kind: 'backup-storage', field: 'backupStorageUuid' },
    sameZone: false,
  },
} as const satisfies Record<string, AttachmentDef>;

export type AttachmentType = keyof typeof ATTACHMENTS;
export const ATTACHMENT_KINDS = Object.keys(ATTACHMENTS) as AttachmentType[];

/** Deterministic uuid (v5-shaped) of an attachment. */
export function attachmentUuid(type: AttachmentType, leftUuid: string, rightUuid: string): string {
  const h = createHash('sha1').update(`tstack-attachment:${type}:${leftUuid}:${rightUuid}`).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

async function mustGet(store: InventoryStore, uuid: string, kind: string, field: string): Promise<Resource> {
  const r = await store.get(uuid);
  if (!r || r.kind !== kind) throw new TStackError('NOT_FOUND', `no ${kind} with uuid ${uuid}`, { field, uuid });
  return r;
}

/** Attach; CONFLICT if already attached; NOT_FOUND if a side is missing; INVALID_ARGUMENT across zones. */
export async function attach(store: InventoryStore, type: AttachmentType, leftUuid: string, rightUuid: string, ownerAccountUuid: string): Promise<Resource> {
  const def: AttachmentDef = ATTACHMENTS[type];
  const left = await mustGet(store, leftUuid, def.left.kind, def.left.field);
  const right = await mustGet(store, rightUuid, def.right.kind, def.right.field);
  if (def.sameZone && left.parentUuid !== right.parentUuid) {
    throw new TStackError('INVALID_ARGUMENT', `${def.right.kind} ${right.name} (${rightUuid}) is in another zone than ${def.left.kind} ${left.name}`, { field: def.right.field });
  }
  try {
    return await store.create({
      uuid: attachmentUuid(type, leftUuid, rightUuid),
      kind: type,
      name: `${left.name} ⇄ ${right.name}`,
      createDate: '',
      lastOpDate: '',
      ownerAccountUuid,
      tags: [],
      parentUuid: leftUuid,
      [def.left.field]: leftUuid,
      [def.right.field]: rightUuid,
    });
  } catch (e) {
    if (e instanceof TStackError && e.code === 'CONFLICT') {
      throw new TStackError('CONFLICT', `${def.right.kind} ${right.name} is already attached to ${def.left.kind} ${left.name}`, { field: def.right.field });
    }
    throw e;
  }
}

/** Detach; true if it was attached. */
export async function detach(store: InventoryStore, type: AttachmentType, leftUuid: string, rightUuid: string): Promise<boolean> {
  return store.delete(attachmentUuid(type, leftUuid, rightUuid));
}

export async function isAttached(store: InventoryStore, type: AttachmentType, leftUuid: string, rightUuid: string): Promise<boolean> {
  return (await store.get(attachmentUuid(type, leftUuid, rightUuid))) !== undefined;
}

/** Right-side uuids attached to a left side (the PS of a cluster, the BS of a zone…). */
export async function attachedTo(store: InventoryStore, type: AttachmentType, leftUuid: string): Promise<string[]> {
  const def: AttachmentDef = ATTACHMENTS[type];
  return (await store.byParent(type, leftUuid)).map((a) => String(a[def.right.field]));
}

/** Left-side uuids a right side is attached to (the clusters of a PS, the zones of a BS…). */
export async function attachedFrom(store: InventoryStore, type: AttachmentType, rightUuid: string): Promise<string[]> {
  const def: AttachmentDef = ATTACHMENTS[type];
  const r = await store.list({ kind: type, filters: [{ field: def.right.field, op: '=', value: rightUuid }] });
  return r.items.map((a) => String(a[def.left.field]));
}
