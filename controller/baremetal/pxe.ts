// PXE servers as desired state (like the flat DHCP): the reconcile area 'baremetal-pxe', one
// key per server, computes the server's whole spec from the inventory — its L2's bridge on its
// host, its addresses, running = state Enabled, and the machines of its zone that must PXE-boot
// now (a chassis's internal `_pxe` {mac, boot, token}, set by inspection/provisioning) — and
// sends it with baremetal/pxe/apply. Any change of a server or a chassis of its zone marks the
// key; the periodic pass repairs drift (a killed dnsmasq, a deleted namespace).
import { logger } from '../../shared/log.js';
import { baremetal as BM } from '../../shared/protocol/index.js';
import { TStackError } from '../../shared/errors.js';
import type { ReconcileArea } from '../reconcile/queue.js';
import type { ControllerContext } from '../context.js';
import type { Resource } from '../store/types.js';
import { callHost } from '../cloud/common.js';
import { ensureBridge } from '../network/index.js';
import { PXE_HTTP_PORT } from './model.js';

const log = logger('baremetal');
export const PXE_AREA = 'baremetal-pxe';

type PxeMachineT = BM.PxeServerSpecT['machines'][number];

/** The spec of one server from the inventory. */
export async function pxeSpecOf(c: ControllerContext, srv: Resource, bridge: string): Promise<BM.PxeServerSpecT> {
  const chassis = (await c.store.list({ kind: 'baremetal-chassis', filters: [{ field: 'zoneUuid', op: '=', value: String(srv.zoneUuid) }] })).items;
  const machines = chassis.map((ch) => ch._pxe as PxeMachineT | undefined).filter((m): m is PxeMachineT => m !== undefined);
  return {
    pxeServerUuid: srv.uuid,
    bridge,
    serverIp: String(srv.dhcpInterfaceAddress),
    dhcpRangeBegin: String(srv.dhcpRangeBegin),
    dhcpRangeEnd: String(srv.dhcpRangeEnd),
    dhcpRangeNetmask: String(srv.dhcpRangeNetmask),
    httpPort: PXE_HTTP_PORT,
    running: srv.state !== 'Disabled',
    machines,
    ...(typeof srv._discoveryToken === 'string' ? { discoveryToken: srv._discoveryToken } : {}),
  };
}

export async function applyPxe(c: ControllerContext, uuid: string): Promise<void> {
  const srv = await c.store.get(uuid);
  if (!srv || srv.kind !== 'baremetal-pxe-server') return; // deleted: its delete removed it from the host
  try {
    const l2 = await c.store.get(String(srv.l2NetworkUuid));
    if (!l2) throw new TStackError('NOT_FOUND', `L2 network ${String(srv.l2NetworkUuid)} of PXE server ${srv.name} is gone`);
    const bridge = await ensureBridge(c, String(srv.hostUuid), l2);
    const r = await callHost(c, String(srv.hostUuid), 'vrouteragent', BM.PxeApply, { server: await pxeSpecOf(c, srv, bridge) });
    if (await deletedMeanwhile(c, srv)) return;
    const status = r.state.running ? 'Running' : 'Stopped';
    if (srv.status !== status || srv.namespace !== r.state.namespace || srv.lastError !== undefined) await c.store.update(uuid, { status, namespace: r.state.namespace, lastError: undefined });
  } catch (e) {
    if (await deletedMeanwhile(c, srv)) return;
    const err = TStackError.from(e);
    await c.store.update(uuid, { status: 'Error', lastError: `${err.code}: ${err.message}` }).catch(() => undefined);
    throw err;
  }
}

/**
 * A DELETE while an apply was in flight: the delete's PxeDelete may have run before the apply
 * re-made the namespace on the host, so remove it again (else it leaks, with no record of it).
 */
async function deletedMeanwhile(c: ControllerContext, srv: Resource): Promise<boolean> {
  if (await c.store.get(srv.uuid)) return false;
  await callHost(c, String(srv.hostUuid), 'vrouteragent', BM.PxeDelete, { pxeServerUuid: srv.uuid }).catch(() => undefined);
  return true;
}

export function pxeArea(c: ControllerContext): ReconcileArea {
  return {
    name: PXE_AREA,
    keys: async () => (await c.store.list({ kind: 'baremetal-pxe-server' })).items.map((s) => s.uuid),
    apply: (k) => applyPxe(c, k),
  };
}

/** Mark the server of a zone (a chassis changed) or the server itself. */
export function watchPxeChanges(c: ControllerContext): () => void {
  return c.bus.subscribe((e) => {
    if (e.type !== 'resource.created' && e.type !== 'resource.updated') return;
    if (e.kind === 'baremetal-pxe-server') c.reconcile.mark(PXE_AREA, e.uuid);
    else if (e.kind === 'baremetal-chassis') {
      void c.store
        .list({ kind: 'baremetal-pxe-server', filters: [{ field: 'zoneUuid', op: '=', value: String(e.resource.zoneUuid) }] })
        .then((r) => r.items.forEach((s) => c.reconcile.mark(PXE_AREA, s.uuid)))
        .catch((err: unknown) => log.warn({ chassis: e.uuid, err: (err as Error).message }, 'cannot mark the PXE server of a chassis'));
    }
  });
}

/** The zone's PXE server, if any. */
export async function pxeServerOfZone(c: ControllerContext, zoneUuid: string): Promise<Resource | undefined> {
  return (await c.store.list({ kind: 'baremetal-pxe-server', filters: [{ field: 'zoneUuid', op: '=', value: zoneUuid }], limit: 1 })).items[0];
}
