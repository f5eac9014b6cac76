// Stuck transitional states after a restart (peers.md pain point 1: "fixable only by editing
// the DB"). resume() finishes or rolls back every journaled flow; what is still in a
// transitional state afterwards has no flow that will ever move it, so it is moved to a state
// the rest of the system knows how to repair:
//   VM Starting/Stopping/Rebooting/…  -> Unknown       (the host's VM sync reads the truth from libvirt)
//   host status Connecting            -> Disconnected  (the host tracker reconnects it)
// Resources named in any unfinished journal (of any controller) are left alone, and the state
// is compare-and-set, so a concurrent change wins. Call once at start, after engine.resume().
import type { InventoryStore, Resource } from '../store/types.js';
import { VM_TRANSITIONAL } from '../model/states.js';
import { JOURNALS, type FlowJournal } from './flow.js';
import { logger } from '../../shared/log.js';

export interface StuckRule {
  kind: string;
  field: 'state' | 'status';
  stuck: readonly string[];
  to: string;
}

export const DEFAULT_STUCK_RULES: readonly StuckRule[] = [
  { kind: 'vm-instance', field: 'state', stuck: VM_TRANSITIONAL, to: 'Unknown' },
  { kind: 'host', field: 'status', stuck: ['Connecting'], to: 'Disconnected' },
];

export interface Recovered {
  uuid: string;
  kind: string;
  field: 'state' | 'status';
  from: string;
  to: string;
}

export async function recoverStuck(store: InventoryStore, opts: { rules?: readonly StuckRule[]; busy?: Iterable<string> } = {}): Promise<Recovered[]> {
  const log = logger('flow-recover');
  const busy = new Set<string>(opts.busy ?? []);
  for (const { doc } of await store.listDocs<FlowJournal>(JOURNALS)) {
    for (const k of doc.lockKeys ?? []) busy.add(k);
    if (doc.hostUuid) busy.add(doc.hostUuid);
  }
  const out: Recovered[] = [];
  for (const rule of opts.rules ?? DEFAULT_STUCK_RULES) {
    const hits = (await store.list({ kind: rule.kind, filters: [{ field: rule.field, op: '?=', value: [...rule.stuck] }] })).items;
    for (const r of hits) {
      if (busy.has(r.uuid)) continue;
      const from = String(r[rule.field]);
      try {
        if (rule.field === 'state') {
          await store.transition(r.uuid, from, rule.to, { stuckRecoveredFrom: from });
        } else {
          const cur = await store.get<Resource>(r.uuid);
          if (!cur || cur[rule.field] !== from) continue;
          await store.update(r.uuid, { [rule.field]: rule.to, stuckRecoveredFrom: from });
        }
      } catch {
        continue; // changed meanwhile: someone is handling it
      }
      log.warn({ uuid: r.uuid, kind: r.kind, field: rule.field, from, to: rule.to }, 'resource was stuck in a transitional state with no flow to finish it; moved it');
      out.push({ uuid: r.uuid, kind: r.kind, field: rule.field, from, to: rule.to });
    }
  }
  return out;
}
