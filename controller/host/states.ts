// Host and VM state rules of host tracking, as pure functions (unit-tested).
//  - status (connection, set by the system): Connecting → Connected | Disconnected; Disconnected → Connecting (reconnect) | Connected (pings answer again).
//  - state (admin): Enabled ⇄ Disabled; Enabled|Disabled → Maintenance; Maintenance → Enabled.
//  - VMs: a host that goes Disconnected makes its Running/Paused VMs Unknown; when it answers
//    again, vm/sync decides each VM's state from what the hypervisor reports.
export type HostStatus = 'Connecting' | 'Connected' | 'Disconnected';
export type HostState = 'Enabled' | 'Disabled' | 'PreMaintenance' | 'Maintenance';
export type StateEvent = 'enable' | 'disable' | 'maintain';

/** From which states an admin state event is allowed, and where it leads. */
export function stateTransition(event: StateEvent): { from: HostState[]; to: HostState } {
  switch (event) {
    case 'enable':
      return { from: ['Disabled', 'Maintenance', 'PreMaintenance'], to: 'Enabled' };
    case 'disable':
      return { from: ['Enabled'], to: 'Disabled' };
    case 'maintain':
      return { from: ['Enabled', 'Disabled'], to: 'Maintenance' };
  }
}

/** VM states the tracker may set Unknown when the host stops answering (transitional ones belong to their workflow). */
export const VM_STATES_TO_UNKNOWN = ['Running', 'Paused'] as const;
/** Inventory VM states that vm/sync may correct from what the hypervisor reports. */
export const VM_STATES_SYNCABLE = ['Running', 'Paused', 'Stopped', 'Unknown'] as const;

/** The inventory state a hypervisor state means (undefined: leave the VM alone). */
export function inventoryStateOf(hvState: string | undefined): 'Running' | 'Paused' | 'Stopped' | undefined {
  switch (hvState) {
    case undefined: // no domain on the host
    case 'Stopped':
    case 'Crashed':
      return 'Stopped';
    case 'Running':
      return 'Running';
    case 'Paused':
    case 'Suspended':
      return 'Paused';
    default:
      return undefined; // Stopping, Unknown: look again next time
  }
}

export interface SyncDecision {
  vmUuid: string;
  from: string;
  to: string;
}

/**
 * What vm/sync changes: for each inventory VM of the host in a syncable state, the state the
 * hypervisor reports (absent = Stopped). VMs in transitional states are left to their workflow.
 */
export function syncDecisions(inventory: Array<{ uuid: string; state?: string }>, onHost: Map<string, string>): SyncDecision[] {
  const out: SyncDecision[] = [];
  for (const vm of inventory) {
    const cur = vm.state ?? '';
    if (!(VM_STATES_SYNCABLE as readonly string[]).includes(cur)) continue;
    const to = inventoryStateOf(onHost.get(vm.uuid));
    if (to && to !== cur) out.push({ vmUuid: vm.uuid, from: cur, to });
  }
  return out;
}

export interface PingOutcome {
  ok: boolean;
  misses: number;
  status: HostStatus;
}

/** The status after one ping round: 3 (maxMisses) misses in a row → Disconnected; an answer → Connected. */
export function nextStatus(prev: { status: HostStatus; misses: number }, answered: boolean, maxMisses: number): PingOutcome {
  if (answered) return { ok: true, misses: 0, status: 'Connected' };
  const misses = prev.misses + 1;
  return { ok: false, misses, status: misses >= maxMisses ? 'Disconnected' : prev.status };
}
