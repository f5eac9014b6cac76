// VMs destroyed while their host was down (Unknown on a dead or disconnected host): the
// controller let them go without asking the host, so their domains may still run there. The
// host keeps their uuids until it reconnects; its VM sync then destroys those domains
// (vmsync.ts) — as ZStack's DeleteVmGC does on reconnect.
import type { InventoryStore, Resource } from '../store/types.js';

const FIELD = '_fenceOnReturn';

/** The VMs whose domains must go when this host comes back. */
export const fencedOn = (host: Resource): string[] => (Array.isArray(host[FIELD]) ? (host[FIELD] as string[]) : []);

export async function fenceOnReturn(store: InventoryStore, hostUuid: string, vmUuid: string): Promise<void> {
  const host = await store.get(hostUuid);
  if (!host || fencedOn(host).includes(vmUuid)) return;
  await store.update(hostUuid, { [FIELD]: [...fencedOn(host), vmUuid] });
}

/** Forget these VMs (their domains are gone from the host). */
export async function unfence(store: InventoryStore, hostUuid: string, vmUuids: string[]): Promise<void> {
  if (vmUuids.length === 0) return; // every VM sync calls this: no read for nothing to forget
  const host = await store.get(hostUuid);
  if (!host) return;
  const keep = fencedOn(host).filter((u) => !vmUuids.includes(u));
  await store.update(hostUuid, { [FIELD]: keep.length ? keep : undefined });
}
