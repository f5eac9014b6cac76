// Bare-metal instances (model: ./instance-model.ts; docs/baremetal.md): provisioning is
// image-based like Ironic's direct deploy. Every operation that touches the machine is a
// journaled flow (onResume 'rollback'), so a failure or a killed controller ends with the chassis
// powered off, its boot device PXE and no PXE instructions left — ready for the next try:
//
//   baremetal-provision (create, reinstall)       baremetal-wipe (delete)
//     claim       chassis → Provisioning            claim      instance/chassis → Deleting
//     prepare     image + config drive on the PXE host (baremetal/deploy/prepare)
//     pxe         the chassis boots the deploy ramdisk with a one-time token
//     power-on    boot device PXE, power off, power on
//     deploy-wait the ramdisk's report (PXE_TIMEOUT, DEPLOY_FAILED, CHECKSUM_MISMATCH)
//     boot-disk   PXE off (iPXE exits), boot device disk, power-cycle
//     finish      instance Running, chassis Provisioned
//                                                   pxe / power-on / wipe-wait as above (action wipe)
//                                                   release    power off, chassis Available, record gone
//
// Errors keep their code and name the step ("deploy-wait: the deploy ramdisk failed at checksum: …").
import { randomBytes } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { baremetal as BM } from '../../shared/protocol/index.js';
import type { Resource } from '../store/types.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { ControllerContext } from '../context.js';
import type { FlowContext, FlowDef, FlowStep } from '../workflow/flow.js';
import { callHost, injectFault, mustGet } from '../cloud/common.js';
import { locked } from '../cloud/keyed-lock.js';
import { kindDef, prepareCreate } from '../model/index.js';
import { imageStoreRef } from '../storage/index.js';
import { chassisBootDevice, chassisPower, secretBoxOf } from './api.js';
import { PXE_AREA, pxeServerOfZone } from './pxe.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Controllers whose module stopped: their waiting flows stop where they are (as in a killed process); the next controller resumes the journal. */
export const stoppedControllers = new WeakSet<ControllerContext>();
export const DEFAULT_DEPLOY_TIMEOUT_SEC = 1800;

interface BmData extends Record<string, unknown> {
  instanceUuid: string;
  chassisUuid: string;
  pxeServerUuid: string;
  mode: 'provision' | 'reinstall' | 'wipe';
  imageUuid?: string;
  token?: string;
  timeoutSec: number;
  /** Seconds per step (shown as the instance's `phases`). */
  phases: Record<string, number>;
}

const step = (e: unknown, name: string): TStackError => {
  const err = TStackError.from(e);
  return err.message.startsWith(`${name}: `) ? err : new TStackError(err.code, `${name}: ${err.message}`, { ...(err.details ?? {}), step: name });
};

/** A flow step whose errors name it, timed into data.phases. */
function bmStep(name: string, run: (ctx: FlowContext<BmData>) => Promise<void>, rollback?: (ctx: FlowContext<BmData>) => Promise<void>): FlowStep<BmData> {
  return {
    name,
    async run(ctx) {
      const t0 = Date.now();
      try {
        await run(ctx);
      } catch (e) {
        throw step(e, name);
      }
      ctx.data.phases[name] = Math.round((Date.now() - t0) / 100) / 10;
      await ctx.save();
      injectFault(ctx.flowName, name);
    },
    ...(rollback ? { rollback } : {}),
  };
}

async function chassisOf(c: ControllerContext, d: BmData): Promise<Resource> {
  return mustGet(c.store, d.chassisUuid, 'baremetal-chassis');
}

/**
 * Set what the chassis boots from the zone's PXE server and apply the server now; `later`
 * (rollbacks): only mark it — a rollback may run while a restarted controller resumes its
 * flows, before the reconcile queue runs, and the queue applies it then (and retries it).
 */
async function setPxe(c: ControllerContext, d: BmData, pxe: BM.PxeServerSpecT['machines'][number] | undefined, later = false): Promise<void> {
  await c.store.update(d.chassisUuid, { _pxe: pxe });
  if (later) c.reconcile.mark(PXE_AREA, d.pxeServerUuid);
  else await c.reconcile.sync(PXE_AREA, d.pxeServerUuid);
}

const best = async (what: () => Promise<unknown>): Promise<void> => {
  await what().catch(() => undefined);
};

/** Rollback of everything that touched the machine: no PXE instructions, boot device PXE, powered off. */
async function machineToRest(c: ControllerContext, d: BmData, keepLocal: boolean): Promise<void> {
  const ch = await c.store.get(d.chassisUuid);
  if (!ch) return;
  const mac = String(ch.macAddress ?? (ch._pxe as { mac?: string } | undefined)?.mac ?? '');
  await setPxe(c, d, keepLocal && mac ? { mac, boot: 'local' } : undefined, true);
  await best(() => chassisBootDevice(c, ch, 'pxe'));
  await chassisPower(c, ch, 'powerOff').catch(async () => c.store.update(ch.uuid, { powerState: 'Unknown' }).catch(() => undefined));
}

const macOf = (ch: Resource): string => {
  const nics = (ch.hardware as { nics?: Array<{ mac: string }> } | undefined)?.nics ?? [];
  if (!nics[0]) throw new TStackError('CONFLICT', `chassis ${ch.name} has no inspected NIC: run its inspect action first`, { field: 'chassisUuid' });
  return nics[0].mac.toLowerCase();
};

/** PXE-boot the deploy ramdisk with `deploy`, then wait for its report. */
function pxeAndWaitSteps(action: 'deploy' | 'wipe'): Array<FlowStep<BmData>> {
  return [
    bmStep(
      'pxe',
      async (ctx) => {
        const c = ctx.controller;
        const d = ctx.data;
        d.token = randomBytes(24).toString('base64url');
        await ctx.save();
        const ch = await chassisOf(c, d);
        const deploy = { action, instanceUuid: d.instanceUuid, ...(action === 'deploy' && d.imageUuid ? { imageUuid: d.imageUuid } : {}) };
        await setPxe(c, d, { mac: macOf(ch), boot: 'deploy', token: d.token, deploy });
      },
      async (ctx) => setPxe(ctx.controller, ctx.data, undefined, true),
    ),
    bmStep(
      'power-on',
      async (ctx) => {
        const c = ctx.controller;
        let ch = await chassisOf(c, ctx.data);
        ch = await chassisBootDevice(c, ch, 'pxe');
        ch = await chassisPower(c, ch, 'powerOff');
        await chassisPower(c, ch, 'powerOn');
      },
      async (ctx) => machineToRest(ctx.controller, ctx.data, ctx.data.mode !== 'provision'),
    ),
    bmStep(action === 'deploy' ? 'deploy-wait' : 'wipe-wait', async (ctx) => {
      const c = ctx.controller;
      const d = ctx.data;
      const deadline = Date.now() + d.timeoutSec * 1000;
      const srv = await mustGet(c.store, d.pxeServerUuid, 'baremetal-pxe-server');
      for (;;) {
        if (stoppedControllers.has(c)) await new Promise(() => undefined);
        const st = (await callHost(c, String(srv.hostUuid), 'vrouteragent', BM.PxeStatus, { pxeServerUuid: srv.uuid })).state;
        const got = st?.deployReports?.find((r) => r.token === d.token);
        if (got?.report.ok) return;
        if (got) {
          const r = got.report;
          const code = r.step === 'checksum' ? 'CHECKSUM_MISMATCH' : 'DEPLOY_FAILED';
          throw new TStackError(code, `the deploy ramdisk failed at ${r.step ?? 'an unknown step'}: ${r.message ?? 'no message'}`, { ramdiskStep: r.step });
        }
        if (Date.now() > deadline) {
          const mac = (await chassisOf(c, d))._pxe as { mac?: string } | undefined;
          const booted = st?.recentBoots.some((b) => b.mac === mac?.mac && b.boot === 'deploy');
          throw new TStackError('PXE_TIMEOUT', `no report from the deploy ramdisk within ${d.timeoutSec} s (${booted ? 'the machine fetched its deploy boot script: the ramdisk did not report' : `the machine did not PXE-boot from server ${srv.name}`})`);
        }
        await sleep(1000);
      }
    }),
  ];
}

// create / reinstall
export const provisionFlow: FlowDef<BmData> = {
  name: 'baremetal-provision',
  onResume: 'rollback',
  steps: [
    bmStep(
      'claim',
      async (ctx) => {
        const c = ctx.controller;
        const d = ctx.data;
        const ch = await chassisOf(c, d);
        const mine = ch.instanceUuid === d.instanceUuid;
        if (d.mode === 'provision' ? ch.status !== 'Available' || (ch.instanceUuid && !mine) : !mine) {
          throw new TStackError('CONFLICT', `chassis ${ch.name} is ${String(ch.status)}${ch.instanceUuid ? ` (instance ${String(ch.instanceUuid)})` : ''}`, { field: 'chassisUuid' });
        }
        await c.store.update(ch.uuid, { status: 'Provisioning', instanceUuid: d.instanceUuid, macAddress: macOf(ch) });
        await c.store.update(d.instanceUuid, { state: d.mode === 'provision' ? 'Provisioning' : 'Reinstalling', lastError: undefined });
      },
      async (ctx) => {
        const c = ctx.controller;
        const d = ctx.data;
        if (d.mode === 'provision') {
          const ch = await c.store.get(d.chassisUuid);
          if (ch?.instanceUuid === d.instanceUuid) await c.store.update(d.chassisUuid, { status: 'Available', instanceUuid: undefined, _pxe: undefined });
          await c.store.delete(d.instanceUuid).catch(() => undefined);
        } else {
          // the old system may be gone: the instance stays, in Error, on its powered-off chassis
          await c.store.update(d.chassisUuid, { status: 'Provisioned' });
          if (await c.store.get(d.instanceUuid)) await c.store.update(d.instanceUuid, { state: 'Error' });
        }
      },
    ),
    bmStep(
      'prepare',
      async (ctx) => {
        const c = ctx.controller;
        const d = ctx.data;
        const inst = await mustGet(c.store, d.instanceUuid, 'baremetal-instance');
        const image = await mustGet(c.store, String(d.imageUuid), 'image', 'imageUuid');
        const bsUuid = (image.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined)?.[0]?.backupStorageUuid;
        if (!bsUuid) throw new TStackError('CONFLICT', `image ${image.name} is on no image store`, { field: 'imageUuid' });
        const ref = await imageStoreRef(c, bsUuid);
        const srv = await mustGet(c.store, d.pxeServerUuid, 'baremetal-pxe-server');
        const rootPassword = typeof inst._rootPassword === 'string' ? secretBoxOf(c).open(inst._rootPassword, inst.uuid) : undefined;
        await callHost(c, String(srv.hostUuid), 'vrouteragent', BM.DeployPrepare, {
          instanceUuid: inst.uuid,
          image: { imageUuid: image.uuid, imageStore: { url: ref.url, token: ref.token, storeUuid: ref.storeUuid }, ...(typeof image.md5sum === 'string' ? { md5: image.md5sum } : {}) },
          configDrive: {
            hostname: String(inst.hostname),
            ...(typeof inst.sshKey === 'string' ? { sshKeys: [inst.sshKey] } : {}),
            ...(typeof inst.userData === 'string' ? { userData: inst.userData } : {}),
            ...(rootPassword !== undefined ? { rootPassword } : {}),
            network: { mac: String(inst.macAddress), ip: String(inst.ip), netmask: String(inst.netmask) },
          },
        });
      },
      async (ctx) => {
        const c = ctx.controller;
        const srv = await c.store.get(ctx.data.pxeServerUuid);
        if (srv) await best(() => callHost(c, String(srv.hostUuid), 'vrouteragent', BM.DeployCleanup, { instanceUuid: ctx.data.instanceUuid }));
      },
    ),
    ...pxeAndWaitSteps('deploy'),
    bmStep(
      'boot-disk',
      async (ctx) => {
        const c = ctx.controller;
        const d = ctx.data;
        let ch = await chassisOf(c, d);
        await setPxe(c, d, { mac: macOf(ch), boot: 'local' });
        ch = await chassisBootDevice(c, ch, 'disk');
        ch = await chassisPower(c, ch, 'powerOff');
        await chassisPower(c, ch, 'powerOn');
      },
      async (ctx) => machineToRest(ctx.controller, ctx.data, ctx.data.mode !== 'provision'),
    ),
    bmStep('finish', async (ctx) => {
      const c = ctx.controller;
      const d = ctx.data;
      await c.store.update(d.chassisUuid, { status: 'Provisioned' });
      await c.store.update(d.instanceUuid, { state: 'Running', imageUuid: d.imageUuid, provisionedAt: new Date().toISOString(), phases: d.phases });
      const srv = await c.store.get(d.pxeServerUuid);
      // the config drive holds the keys and the password hash: not kept on the PXE host
      if (srv) await best(() => callHost(c, String(srv.hostUuid), 'vrouteragent', BM.DeployCleanup, { instanceUuid: d.instanceUuid }));
    }),
  ],
};

// delete: the ramdisk wipes the disk's start and end; then the chassis is free
export const wipeFlow: FlowDef<BmData> = {
  name: 'baremetal-wipe',
  onResume: 'rollback',
  steps: [
    bmStep(
      'claim',
      async (ctx) => {
        const c = ctx.controller;
        await c.store.update(ctx.data.chassisUuid, { status: 'Deleting' });
        await c.store.update(ctx.data.instanceUuid, { state: 'Deleting' });
      },
      async (ctx) => {
        const c = ctx.controller;
        await c.store.update(ctx.data.chassisUuid, { status: 'Provisioned' }).catch(() => undefined);
        if (await c.store.get(ctx.data.instanceUuid)) await c.store.update(ctx.data.instanceUuid, { state: 'Error' });
      },
    ),
    ...pxeAndWaitSteps('wipe'),
    bmStep('release', async (ctx) => {
      const c = ctx.controller;
      const d = ctx.data;
      const ch = await chassisOf(c, d);
      await setPxe(c, d, undefined);
      await chassisPower(c, ch, 'powerOff');
      await c.store.update(d.chassisUuid, { status: 'Available', instanceUuid: undefined, macAddress: undefined });
      await c.store.delete(d.instanceUuid);
      const srv = await c.store.get(d.pxeServerUuid);
      if (srv) await best(() => callHost(c, String(srv.hostUuid), 'vrouteragent', BM.DeployCleanup, { instanceUuid: d.instanceUuid }));
    }),
  ],
};

const ip4 = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const ipStr = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** The lowest free address of the PXE server's subnet outside its DHCP range (static addresses of instances). */
export function allocateAddress(srv: { dhcpInterfaceAddress: string; dhcpRangeBegin: string; dhcpRangeEnd: string; dhcpRangeNetmask: string }, used: Set<string>): string {
  const mask = ip4(srv.dhcpRangeNetmask);
  const net = ip4(srv.dhcpInterfaceAddress) - (ip4(srv.dhcpInterfaceAddress) % (2 ** 32 - mask));
  const bcast = net + (2 ** 32 - mask) - 1;
  const [b, e] = [ip4(srv.dhcpRangeBegin), ip4(srv.dhcpRangeEnd)];
  for (let a = net + 1; a < bcast; a++) {
    const s = ipStr(a);
    if ((a >= b && a <= e) || s === srv.dhcpInterfaceAddress || used.has(s)) continue;
    return s;
  }
  throw new TStackError('CONFLICT', `the provisioning network of PXE server outside its DHCP range ${srv.dhcpRangeBegin}-${srv.dhcpRangeEnd} has no free address left`, { field: 'chassisUuid' });
}

/** The instance's host name from its name: RFC 1123 label, lower case. */
export function hostnameOf(name: string, uuid: string): string {
  const h = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return h || `bm-${uuid.slice(0, 8)}`;
}

async function runBm(oc: OpContext, flow: FlowDef<BmData>, data: BmData): Promise<void> {
  await oc.engine.run(flow, data, { ...(oc.job ? { id: oc.job.jobUuid, onProgress: (p: number, m?: string) => oc.job!.progress(p, m) } : {}), lockKeys: [data.chassisUuid, data.instanceUuid] });
}

function checkImage(image: Resource): void {
  if (image.status !== 'Ready') throw new TStackError('INVALID_ARGUMENT', `imageUuid: image ${image.name} is ${String(image.status)}, not Ready`, { field: 'imageUuid' });
  if (image.mediaType !== 'RootVolumeTemplate' || !['qcow2', 'raw'].includes(String(image.format))) {
    throw new TStackError('INVALID_ARGUMENT', `imageUuid: image ${image.name} is a ${String(image.mediaType)} (${String(image.format)}); a bare-metal instance needs a RootVolumeTemplate in qcow2 or raw`, { field: 'imageUuid' });
  }
}

async function createInstance(body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const p = await prepareCreate(oc.store, kindDef('baremetal-instance')!, body, { ownerAccountUuid: oc.principal.accountUuid });
  const ch = p.refs.chassisUuid!;
  checkImage(p.refs.imageUuid!);
  const timeoutSec = typeof body.timeoutSec === 'number' ? body.timeoutSec : DEFAULT_DEPLOY_TIMEOUT_SEC;
  delete p.resource.timeoutSec;
  const mac = macOf(ch);
  const srv = await pxeServerOfZone(oc, String(ch.zoneUuid));
  if (!srv || srv.state === 'Disabled') throw new TStackError('CONFLICT', `zone ${String(ch.zoneUuid)} has no running PXE server; create or start one (baremetal-pxe-servers)`, { field: 'chassisUuid' });
  const inst = await locked(`baremetal-ip:${srv.uuid}`, async () => {
    if (ch.status !== 'Available' || ch.instanceUuid) throw new TStackError('CONFLICT', `chassis ${ch.name} is in use (${String(ch.status)}${ch.instanceUuid ? `, instance ${String(ch.instanceUuid)}` : ''})`, { field: 'chassisUuid' });
    const others = (await oc.store.list({ kind: 'baremetal-instance', filters: [{ field: 'pxeServerUuid', op: '=', value: srv.uuid }] })).items;
    if (others.some((o) => o.chassisUuid === ch.uuid)) throw new TStackError('CONFLICT', `chassis ${ch.name} is in use by instance ${others.find((o) => o.chassisUuid === ch.uuid)!.name}`, { field: 'chassisUuid' });
    const ip = allocateAddress(srv as never, new Set(others.map((o) => String(o.ip))));
    const r = p.resource;
    Object.assign(r, { hostname: hostnameOf(r.name, r.uuid), macAddress: mac, ip, netmask: String(srv.dhcpRangeNetmask), pxeServerUuid: srv.uuid, state: 'Provisioning' });
    if (typeof p.secrets.rootPassword === 'string') r._rootPassword = secretBoxOf(oc).seal(p.secrets.rootPassword, r.uuid);
    return oc.store.create(r);
  });
  await runBm(oc, provisionFlow, { instanceUuid: inst.uuid, chassisUuid: ch.uuid, pxeServerUuid: srv.uuid, mode: 'provision', imageUuid: String(inst.imageUuid), timeoutSec, phases: {} });
  return (await oc.store.get(inst.uuid)) ?? inst;
}

const BUSY = ['Provisioning', 'Reinstalling', 'Deleting'];
function notBusy(inst: Resource, what: string): void {
  if (BUSY.includes(String(inst.state))) throw new TStackError('CONFLICT', `${what}: instance ${inst.name} is ${String(inst.state)}`, { state: inst.state });
}

async function power(inst: Resource, op: 'powerOn' | 'powerOff' | 'powerReset', oc: OpContext): Promise<Resource> {
  const what = { powerOn: 'start', powerOff: 'stop', powerReset: 'reboot' }[op];
  notBusy(inst, what);
  if (inst.state === 'Error' && op !== 'powerOff') throw new TStackError('CONFLICT', `${what}: instance ${inst.name} is in Error (its last reinstall failed): reinstall or delete it`, { state: inst.state });
  const ch = await mustGet(oc.store, String(inst.chassisUuid), 'baremetal-chassis');
  try {
    const r = await chassisPower(oc, ch, op);
    if (inst.state === 'Error') return (await oc.store.get(inst.uuid)) ?? inst;
    return await oc.store.update(inst.uuid, { state: r.powerState === 'On' ? 'Running' : 'Stopped' });
  } catch (e) {
    throw step(e, what);
  }
}

export function registerBaremetalInstanceApi(reg: ApiRegistry): void {
  reg.setCreate('baremetal-instances', { long: true, run: createInstance });
  reg.registerAction('baremetal-instances', 'start', { run: (r, _p, oc) => power(r, 'powerOn', oc) });
  reg.registerAction('baremetal-instances', 'stop', { run: (r, _p, oc) => power(r, 'powerOff', oc) });
  reg.registerAction('baremetal-instances', 'reboot', { run: (r, _p, oc) => power(r, 'powerReset', oc) });
  reg.registerAction('baremetal-instances', 'reinstall', {
    run: async (r, p, oc) => {
      notBusy(r, 'reinstall');
      const imageUuid = typeof p.imageUuid === 'string' ? p.imageUuid : String(r.imageUuid);
      const image = await oc.store.get(imageUuid);
      if (!image || image.kind !== 'image') throw new TStackError('INVALID_ARGUMENT', `imageUuid: no image with uuid ${imageUuid}`, { field: 'imageUuid' });
      checkImage(image);
      const timeoutSec = typeof p.timeoutSec === 'number' ? p.timeoutSec : DEFAULT_DEPLOY_TIMEOUT_SEC;
      await runBm(oc, provisionFlow, { instanceUuid: r.uuid, chassisUuid: String(r.chassisUuid), pxeServerUuid: String(r.pxeServerUuid), mode: 'reinstall', imageUuid, timeoutSec, phases: {} });
      return (await oc.store.get(r.uuid)) ?? r;
    },
  });
  reg.setDelete('baremetal-instances', {
    long: true,
    run: async (r, q, oc) => {
      if (['Provisioning', 'Reinstalling'].includes(String(r.state))) throw new TStackError('CONFLICT', `delete: instance ${r.name} is ${String(r.state)}`, { state: r.state });
      const timeoutSec = q.timeoutSec && /^\d{1,5}$/.test(q.timeoutSec) ? Number(q.timeoutSec) : 600;
      await runBm(oc, wipeFlow, { instanceUuid: r.uuid, chassisUuid: String(r.chassisUuid), pxeServerUuid: String(r.pxeServerUuid), mode: 'wipe', timeoutSec, phases: {} });
      return r;
    },
  });
}
