// The bare-metal instance kind (manual 裸机管理: 裸机实例; ZStack's BaremetalInstance): an OS
// provisioned onto a chassis from an image, image-based like Ironic's direct deploy
// (./instances.ts, docs/baremetal.md). The root password is sealed like the chassis's BMC
// password (`_rootPassword`, kept for reinstall) and never returned.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { SshPublicKey } from '../../shared/protocol/vrouter.js';
import { baseCreate, baseUpdate, Uuid } from '../model/fields.js';
import { action, emptyAction, type KindDef } from '../model/kind.js';

/**
 * Provisioning / Reinstalling: a workflow writes the disk; Running / Stopped: what the BMC
 * reports; Error: a reinstall failed (the old system is gone; reinstall again or delete);
 * Deleting: the disk is being wiped.
 */
const DeployTimeout = () => Type.Integer({ minimum: 1, maximum: 7200, description: 'how long to wait for the deploy ramdisk to report (default 1800 s)' });

export const BAREMETAL_INSTANCE_STATES = ['Provisioning', 'Running', 'Stopped', 'Reinstalling', 'Error', 'Deleting'] as const;

export const baremetalInstance: KindDef = {
  kind: 'baremetal-instance',
  collection: 'baremetal-instances',
  title: 'bare-metal instance',
  createSchema: Obj({
    ...baseCreate(),
    chassisUuid: Uuid({ description: 'an Available, inspected chassis of a zone with a PXE server' }),
    imageUuid: Uuid({ description: 'a Ready RootVolumeTemplate image (qcow2 or raw) on an image store' }),
    sshKey: Type.Optional(SshPublicKey({ description: "root's authorized key (OpenSSH public key, one line)" })),
    userData: Type.Optional(Type.String({ maxLength: 65_536, description: 'cloud-init user-data (#cloud-config or a #! script)' })),
    rootPassword: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\x20-\\x7e]+$', description: 'root password (stored encrypted, never returned; the config drive holds its sha512-crypt hash)' })),
    timeoutSec: Type.Optional(DeployTimeout()),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [
    { field: 'chassisUuid', kind: 'baremetal-chassis' },
    { field: 'imageUuid', kind: 'image' },
  ],
  states: BAREMETAL_INSTANCE_STATES,
  initialState: 'Provisioning',
  adminOnly: true,
  createMode: 'async',
  deleteMode: 'async',
  secretFields: ['rootPassword'],
  systemFields: ['state', 'zoneUuid', 'hostname', 'macAddress', 'ip', 'netmask', 'pxeServerUuid', 'lastError', 'provisionedAt', 'phases'],
  normalize: (body, ctx) => ({ ...body, zoneUuid: ctx.refs.chassisUuid?.zoneUuid }),
  actions: {
    start: emptyAction('Power the machine on through its BMC (boots its disk)', false),
    stop: emptyAction('Power the machine off through its BMC', false),
    reboot: emptyAction('Reset the machine through its BMC', false),
    reinstall: action(
      Obj({ imageUuid: Type.Optional(Uuid({ description: 'another image (default: the instance\'s)' })), timeoutSec: Type.Optional(DeployTimeout()) }),
      'A fresh system: the deploy ramdisk writes the image and a new config drive again (same address, key, password)',
      true,
    ),
  },
};
