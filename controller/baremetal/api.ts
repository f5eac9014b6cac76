// API of bare-metal chassis (model: ./model.ts). Create and update seal the BMC password; the
// power and boot-device actions call the IPMI commands of a host's vrouteragent (the host of
// the zone's PXE server once there is one, else a Connected host of the chassis's cluster) and
// store what the BMC reports. Failures keep their typed code (IPMI_AUTH_FAILED,
// BMC_UNREACHABLE, IPMI_ERROR) and name the step, e.g. "powerOn: the BMC at … refused user …".
import { TStackError } from '../../shared/errors.js';
import { baremetal as BM } from '../../shared/protocol/index.js';
import type { Static } from '../../shared/protocol/schema.js';
import type { Resource } from '../store/types.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { ControllerContext } from '../context.js';
import { kindDef, prepareCreate } from '../model/index.js';
import { callHost, connectedHosts } from '../cloud/common.js';
import { SecretBox } from '../auth/secret-box.js';
import { PXE_AREA, pxeServerOfZone } from './pxe.js';
import { randomBytes } from 'node:crypto';

// one box per data dir: the key file is read once, not at every request
const boxes = new Map<string, SecretBox>();
/** The controller's secret box (its key file under the data dir). */
export function secretBoxOf(c: ControllerContext): SecretBox {
  let b = boxes.get(c.dataDir);
  if (!b) {
    b = SecretBox.forDataDir(c.dataDir);
    boxes.set(c.dataDir, b);
  }
  return b;
}

/** The BMC of a chassis as the agent wants it (password opened). */
export function bmcOf(c: ControllerContext, ch: Resource): Static<typeof BM.BmcTarget> {
  const sealed = ch._ipmiPassword;
  if (typeof sealed !== 'string') throw new TStackError('CONFLICT', `chassis ${ch.uuid} has no stored IPMI password; set ipmiPassword with an update`, { uuid: ch.uuid });
  return { address: String(ch.ipmiAddress), port: Number(ch.ipmiPort ?? 623), username: String(ch.ipmiUsername), password: secretBoxOf(c).open(sealed, ch.uuid) };
}

/** The host whose vrouteragent talks to the chassis's BMC (and, later, serves its PXE). */
export async function ipmiHostOf(c: ControllerContext, ch: Resource, step: string): Promise<string> {
  const pxe = await pxeServerOfZone(c, String(ch.zoneUuid));
  if (pxe && typeof pxe.hostUuid === 'string') return pxe.hostUuid;
  const hosts = await connectedHosts(c.store, String(ch.parentUuid ?? ch.clusterUuid));
  if (hosts.length === 0) throw new TStackError('HOST_NOT_CONNECTED', `${step}: cluster ${String(ch.clusterUuid)} has no Connected host to reach the BMC of chassis ${ch.name} from`, { step, uuid: ch.uuid });
  return hosts[0]!.uuid;
}

const POWER: Record<string, BM.PowerOp> = { powerOn: 'on', powerOff: 'off', powerReset: 'reset', powerStatus: 'status' };
const asState = (s: 'on' | 'off'): string => (s === 'on' ? 'On' : 'Off');

/** Power on/off/reset/status of a chassis; stores and returns what the BMC reports. */
export async function chassisPower(c: ControllerContext, ch: Resource, step: keyof typeof POWER): Promise<Resource> {
  const host = await ipmiHostOf(c, ch, step);
  const r = await callHost(c, host, 'vrouteragent', BM.IpmiPower, { bmc: bmcOf(c, ch), op: POWER[step]! });
  return c.store.update(ch.uuid, { powerState: asState(r.powerState), lastPowerCheck: new Date().toISOString() });
}

export async function chassisBootDevice(c: ControllerContext, ch: Resource, device: BM.BootDevice): Promise<Resource> {
  const host = await ipmiHostOf(c, ch, 'setBootDevice');
  await callHost(c, host, 'vrouteragent', BM.IpmiBootDevice, { bmc: bmcOf(c, ch), device });
  return c.store.update(ch.uuid, { bootDevice: device });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * inspect: the zone's PXE server boots machines it does not know into the inspection ramdisk
 * with a one-time discovery token (one inspection per zone at a time: the token is what ties
 * the report to this chassis); set PXE, power on, wait for the report, store it as
 * `hardware`. Whatever happens, the token is withdrawn, the machine powered off and the
 * chassis Available again (reusable). Errors name the step.
 */
export async function inspectChassis(c: ControllerContext, ch: Resource, timeoutSec = 600): Promise<Resource> {
  const srv = await pxeServerOfZone(c, String(ch.zoneUuid));
  if (!srv) throw new TStackError('CONFLICT', `inspect: zone ${String(ch.zoneUuid)} has no PXE server; create one (baremetal-pxe-servers) first`, { step: 'inspect' });
  if (ch.status !== 'Available') throw new TStackError('CONFLICT', `inspect: chassis ${ch.name} is ${String(ch.status)}`, { step: 'inspect' });
  if (typeof srv._discoveryToken === 'string') throw new TStackError('CONFLICT', `inspect: another chassis of zone ${String(ch.zoneUuid)} is being inspected; try again when it is done`, { step: 'inspect' });
  const token = randomBytes(24).toString('base64url');
  await c.store.update(srv.uuid, { _discoveryToken: token });
  await c.store.update(ch.uuid, { status: 'Inspecting' });
  try {
    await c.reconcile.sync(PXE_AREA, srv.uuid).catch((e: unknown) => {
      throw new TStackError(TStackError.from(e).code, `inspect: the PXE server could not be prepared: ${TStackError.from(e).message}`, { step: 'pxe' });
    });
    await chassisBootDevice(c, ch, 'pxe');
    await chassisPower(c, ch, 'powerOff');
    await chassisPower(c, ch, 'powerOn');
    const deadline = Date.now() + timeoutSec * 1000;
    for (;;) {
      const st = await callHost(c, String(srv.hostUuid), 'vrouteragent', BM.PxeStatus, { pxeServerUuid: srv.uuid });
      const got = st.state?.reports.find((r) => r.token === token);
      if (got) {
        const r = got.report;
        const hardware = { cpuNum: r.cpuNum, memorySize: Math.ceil(r.memoryBytes / 2 ** 20) * 2 ** 20, disks: r.disks, nics: r.nics, inspectedAt: got.at };
        return await c.store.update(ch.uuid, { hardware });
      }
      if (Date.now() > deadline) throw new TStackError('PXE_TIMEOUT', `inspect: no report from the inspection ramdisk within ${timeoutSec} s (the machine did not PXE-boot from server ${srv.name}, or its callback failed)`, { step: 'inspect-wait' });
      await sleep(1000);
    }
  } finally {
    await c.store.update(srv.uuid, { _discoveryToken: undefined }).catch(() => undefined);
    await c.reconcile.sync(PXE_AREA, srv.uuid).catch(() => undefined);
    await chassisPower(c, (await c.store.get(ch.uuid)) ?? ch, 'powerOff').catch(() => undefined);
    await c.store.update(ch.uuid, { status: 'Available' }).catch(() => undefined);
  }
}

export function registerBaremetalApi(reg: ApiRegistry): void {
  reg.setCreate('baremetal-chassis', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, kindDef('baremetal-chassis')!, body, { ownerAccountUuid: oc.principal.accountUuid });
      p.resource._ipmiPassword = secretBoxOf(oc).seal(String(p.secrets.ipmiPassword), p.resource.uuid);
      return oc.store.create(p.resource);
    },
  });
  reg.setUpdate('baremetal-chassis', {
    run: async (r, body, oc) => {
      const patch: Record<string, unknown> = { ...body };
      if (typeof body.ipmiPassword === 'string') patch._ipmiPassword = secretBoxOf(oc).seal(body.ipmiPassword, r.uuid);
      delete patch.ipmiPassword;
      return Object.keys(patch).length === 0 ? r : oc.store.update(r.uuid, patch);
    },
  });
  for (const step of Object.keys(POWER)) reg.registerAction('baremetal-chassis', step, { run: (r, _p, oc: OpContext) => chassisPower(oc, r, step) });
  reg.registerAction('baremetal-chassis', 'inspect', { run: async (r, p, oc) => (await oc.store.get((await inspectChassis(oc, r, typeof p.timeoutSec === 'number' ? p.timeoutSec : undefined)).uuid)) ?? r });
  reg.registerAction('baremetal-chassis', 'setBootDevice', { run: (r, p, oc) => chassisBootDevice(oc, r, p.bootDevice as BM.BootDevice) });

  // PXE servers: one per zone; created Starting and applied at once (an apply that fails
  // leaves it in status Error with lastError, retried by the reconcile queue)
  reg.setCreate('baremetal-pxe-servers', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, kindDef('baremetal-pxe-server')!, body, { ownerAccountUuid: oc.principal.accountUuid });
      const other = await pxeServerOfZone(oc, String(p.resource.zoneUuid));
      if (other) throw new TStackError('CONFLICT', `zone ${String(p.resource.zoneUuid)} already has PXE server ${other.name} (${other.uuid}): one per zone`, { field: 'zoneUuid' });
      const r = await oc.store.create(p.resource);
      await syncPxe(oc, r.uuid);
      return (await oc.store.get(r.uuid)) ?? r;
    },
  });
  reg.setDelete('baremetal-pxe-servers', {
    run: async (r, _q, oc) => {
      await callHost(oc, String(r.hostUuid), 'vrouteragent', BM.PxeDelete, { pxeServerUuid: r.uuid });
      await oc.store.delete(r.uuid);
      return r;
    },
  });
  const setState = async (r: Resource, state: 'Enabled' | 'Disabled', oc: OpContext): Promise<Resource> => {
    await oc.store.update(r.uuid, { state });
    await syncPxe(oc, r.uuid);
    return (await oc.store.get(r.uuid)) ?? r;
  };
  reg.registerAction('baremetal-pxe-servers', 'start', { run: (r, _p, oc) => setState(r, 'Enabled', oc) });
  reg.registerAction('baremetal-pxe-servers', 'stop', { run: (r, _p, oc) => setState(r, 'Disabled', oc) });
}

/** Apply a PXE server now (the caller sees the outcome in its status; failures stay queued for retry). */
async function syncPxe(c: ControllerContext, uuid: string): Promise<void> {
  await c.reconcile.sync(PXE_AREA, uuid).catch(() => undefined);
}
