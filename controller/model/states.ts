// State and status values per kind (ZStack's names).
export const ENABLED_STATES = ['Enabled', 'Disabled'] as const;

export const HOST_STATES = ['Enabled', 'Disabled', 'PreMaintenance', 'Maintenance'] as const;
export const CONNECTION_STATUSES = ['Connecting', 'Connected', 'Disconnected'] as const;
export const PRIMARY_STORAGE_STATES = ['Enabled', 'Disabled', 'Maintenance'] as const;

export const IMAGE_STATUSES = ['Downloading', 'Ready', 'Failed', 'Deleted'] as const;

export const VM_STATES = [
  'Created',
  'Starting',
  'Running',
  'Stopping',
  'Stopped',
  'Rebooting',
  'Pausing',
  'Paused',
  'Resuming',
  'Destroying',
  'Destroyed',
  'Expunging',
  'Migrating',
  'Unknown',
  'Error',
] as const;
export type VmState = (typeof VM_STATES)[number];

/** VM states in which the VM holds CPU/memory on its host. */
export const VM_STATES_ON_HOST: readonly VmState[] = ['Starting', 'Running', 'Stopping', 'Rebooting', 'Pausing', 'Paused', 'Resuming', 'Migrating', 'Unknown'];
/** Transitional VM states: a restarted controller must finish or roll back the flow that set them. */
export const VM_TRANSITIONAL: readonly VmState[] = ['Starting', 'Stopping', 'Rebooting', 'Pausing', 'Resuming', 'Destroying', 'Expunging', 'Migrating'];

export const VOLUME_STATUSES = ['NotInstantiated', 'Creating', 'Ready', 'Deleted'] as const;
export const SNAPSHOT_STATUSES = ['Creating', 'Ready', 'Deleted'] as const;
