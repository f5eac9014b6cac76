// Deterministic uuids: the same notification (an alarm's n-th transition, one event for one
// subscription) always gets the same delivery uuid, so the store's uuid uniqueness makes a
// second controller, or a restarted one, fail to create it again instead of sending it twice.
import { createHash } from 'node:crypto';

export function stableUuid(key: string): string {
  const h = createHash('sha256').update(key).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
