// An SNS endpoint's password (HTTP basic auth) is read back to deliver, so it is sealed with the
// controller's secret box (controller/auth/secret-box.ts, bound to the endpoint's uuid) into the
// internal field `_passwordSealed`, never returned. Records from before kept it in clear in
// `_password`: migrateEndpointPasswords() seals those when the monitoring module starts.
import type { SecretBox } from '../auth/secret-box.js';
import type { InventoryStore, Resource } from '../store/types.js';

export const SEALED_PASSWORD = '_passwordSealed';
const CLEAR_PASSWORD = '_password';

export function sealedPassword(box: SecretBox, endpointUuid: string, password: string): Record<string, unknown> {
  return { [SEALED_PASSWORD]: box.seal(password, endpointUuid) };
}

/** The endpoint's password in clear, for a sender (undefined: it has none). */
export function endpointPassword(box: SecretBox, ep: Resource): string | undefined {
  const sealed = ep[SEALED_PASSWORD];
  if (typeof sealed === 'string') return box.open(sealed, ep.uuid);
  // a record not migrated yet (another controller on the same store may still write them)
  const clear = ep[CLEAR_PASSWORD];
  return typeof clear === 'string' ? clear : undefined;
}

/** Seal every clear endpoint password; returns how many were sealed. */
export async function migrateEndpointPasswords(store: InventoryStore, box: SecretBox): Promise<number> {
  let n = 0;
  for (const ep of (await store.list({ kind: 'sns-endpoint', limit: 100_000 })).items) {
    const clear = ep[CLEAR_PASSWORD];
    if (typeof clear !== 'string') continue;
    await store.update(ep.uuid, { ...sealedPassword(box, ep.uuid, clear), [CLEAR_PASSWORD]: undefined });
    n++;
  }
  return n;
}
