// A batch's claim held by another owner (InventoryStore.batch, both backends): the batch is
// refused with CONFLICT, and an allocator that proposed the key tells that apart from any other
// conflict to pick another key and try again.
import { TStackError } from '../../shared/errors.js';

export function claimConflict(namespace: string, key: string, holder: string | undefined): TStackError {
  return new TStackError('CONFLICT', `${key} in ${namespace} is already claimed${holder !== undefined ? ` by ${holder}` : ''}`, { namespace, key, holder, claim: true });
}

/** The claim a batch was refused for, or undefined (another error). */
export function claimRefused(e: unknown): { namespace: string; key: string } | undefined {
  if (!(e instanceof TStackError) || e.code !== 'CONFLICT' || e.details?.claim !== true) return undefined;
  return { namespace: String(e.details.namespace), key: String(e.details.key) };
}
