// VMs in the cloud: create as a journaled flow with rollback, and the console (start, stop, reboot, pause, resume: vm-power.ts; destroy, recover, expunge: vm-destroy.ts).
//
// vm-create steps (each rollback releases what its run acquired; a failure anywhere leaves no
// domain, volume, IP, DHCP entry or reservation — only the error):
//   record       the VM resource (Starting)                       ⟲ delete it
//   host         allocate a host, reserve CPU/memory              ⟲ release the reservation
//   ips          a NIC per L3 with an address (static or next)    ⟲ release addresses, delete NICs
//   root-volume  PS reservation, image cache, linked clone        ⟲ delete volume, release PS
//   data-volumes empty volumes of the data disk offerings         ⟲ delete them
//   bridges      the L2 bridges on the host (shared; kept)
//   dhcp         flat namespace + DHCP entry + metadata record    ⟲ remove entry and record
//   start        vm/start (InstantStart)                          ⟲ vm/destroy
// Test-only fault injection: TSTACK_FAULT_INJECT=vm-create:<step> (cloud/common.ts).
import { randomBytes, randomUUID } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as K from '../../shared/protocol/kvm.js';
import * as S from '../../shared/protocol/storage.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource, StoreWrite } from '../store/types.js';
import { mustKindDef, prepareCreate, recheckUse } from '../model/index.js';
import { allocateHost, releaseHost } from '../allocator/host.js';
import { ipClaim, ipNamespace, ipTaken, ipUnclaimed, pickIp, releaseIp, releaseIpsOf } from '../allocator/ip.js';
import { MAC_NAMESPACE, MAC_TRIES, macClaim, macExhausted, releaseMac, releaseMacsOf } from '../allocator/mac.js';
import { claimRefused } from '../store/claim-conflict.js';
import { allocatePrimaryStorage } from '../allocator/primary-storage.js';
import { Obj } from '../../shared/protocol/schema.js';
import type { FlowContext, FlowDef, FlowStep } from '../workflow/flow.js';
import { callHost, callOn, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { faultPause } from '../../shared/fault-pause.js';
import { psSpec } from '../storage/index.js';
import { withCachedImage } from '../storage/image-cache.js';
import { deleteVolumeEverywhere, type VolRec } from '../storage/volumes.js';
import { markVm, syncVmFlat, vmHostname } from '../network/flat-reconcile.js';
import { checkVmGroups, joinVmGroups } from '../secgroup/api.js';
import { issueConsoleToken } from '../console/tokens.js';
import { bridgeFor, l2sOf, startOnHost, type KnownForSpec, type L3sRead } from './vm-spec.js';
import { allocateHostFor } from './affinity.js';
import { powerAction, startVm, stopVm } from './vm-power.js';
import { destroyVm, expungeVm, recoverVm } from './vm-destroy.js';

export { startStoppedVm, vmPowerFlow, vmStartFlow } from './vm-power.js';

const log = logger('vm');

interface NicRec {
  uuid: string;
  l3NetworkUuid: string;
  ip: string;
  mac: string;
  netmask: string;
  gateway: string;
  ipRangeUuid: string;
  deviceId: number;
}

export interface VmCreateData extends Record<string, unknown> {
  /** The VM record as this flow last wrote it (its later steps read it here, not from the store). */
  vm: Resource;
  hostUuid?: string;
  /** The allocated host's cluster. */
  clusterUuid?: string;
  /** The VM's placement fields, written with its NICs (ips step: one VM write fewer, issue 19). */
  placement?: Partial<Resource>;
  /** L3 → the bridge the bridges step made on the host (the start step sends it as is). */
  bridges?: Record<string, string>;
  nics: NicRec[];
  /** A NIC whose address and MAC were being claimed (journals of older versions: journaled first; now the claims' commit journals the NIC). */
  pendingNic?: { uuid: string; l3NetworkUuid: string };
  root?: VolRec;
  data: VolRec[];
  services: string[];
  started?: boolean;
}

/** Locally administered MACs (fa:…); uniqueness comes from allocateMac's claim. */
const randomMac = (): string => ['fa', ...[...randomBytes(5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');

export { vmHostname };
// ---------------------------------------------------------------------------------------------
// create flow

const FLOW = 'vm-create';
type Ctx = FlowContext<VmCreateData>;

/** A dataVolumeTemplateUuids entry: a Ready DataVolumeTemplate image on some image store (else 400). */
async function dataTemplate(ctx: Ctx, uuid: string, n: number): Promise<Resource> {
  const field = `dataVolumeTemplateUuids.${n}`;
  const img = await mustGet(ctx.store, uuid, 'image', field);
  if (img.mediaType !== 'DataVolumeTemplate') throw new TStackError('INVALID_ARGUMENT', `${field}: image ${img.name} is a ${String(img.mediaType)}, not a DataVolumeTemplate`, { field });
  if (img.status !== 'Ready' || !(img.backupStorageRefs as unknown[] | undefined)?.length) throw new TStackError('INVALID_ARGUMENT', `${field}: image ${img.name} is ${String(img.status)} and on no image store`, { field });
  return img;
}
const deps = (ctx: Ctx): CloudDeps => ctx.controller;
/** The VM asks for data volumes (their step writes the VM's allVolumes itself). */
const hasDataVolumes = (vm: Resource): boolean => ((vm.dataDiskOfferingUuids as unknown[] | undefined)?.length ?? 0) + ((vm.dataVolumeTemplateUuids as unknown[] | undefined)?.length ?? 0) > 0;

// What the flow's earlier steps read, for its later ones (ctx.memo: this run only, so a run
// resumed after a crash reads afresh; issue 19: a create read its host 5 times, its L3s 4).
/** The VM's L3 records (vm-spec.ts L3sRead: nothing a create takes of them can change). */
function l3sRead(ctx: Ctx): L3sRead {
  let m = ctx.memo.get('l3s') as L3sRead | undefined;
  if (!m) ctx.memo.set('l3s', (m = new Map()));
  return m;
}
/**
 * The allocated host's record as the allocator read it, for the agent calls (the flow writes no
 * host record; a token rotated or an agent moved since is met by the agent client: callOn).
 */
const flowHost = (ctx: Ctx): Resource | undefined => {
  const h = ctx.memo.get('host') as Resource | undefined;
  return h && h.uuid === ctx.data.hostUuid ? h : undefined;
};
/** The allocated host's cluster (journals written before clusterUuid was kept: from the host). */
const clusterOf = async (ctx: Ctx): Promise<string> => ctx.data.clusterUuid ?? String((await mustGet(ctx.store, ctx.data.hostUuid!, 'host')).parentUuid);

/** A NIC whose address and MAC claims and record the ips step's commit writes. */
interface FreshNic {
  nic: NicRec;
  /** Its record (as the NIC is now: an address or MAC may be picked again). */
  record: () => Resource;
  staticIp: boolean;
}

/**
 * The journal (the host and the NICs in ctx.data), the NICs' address and MAC claims, their
 * records and the VM's vmNics and placement: one commit (issue 19: each claim was a commit of
 * its own, and each NIC's owner a journal save before them). All or nothing, so a crash on
 * either side leaks nothing: before it the journal names an earlier step and nothing of this one
 * was written. A claim another owner got first: that NIC's address (a static one: its CONFLICT)
 * or MAC is picked again and the commit tried again.
 */
async function commitNics(ctx: Ctx, fresh: FreshNic[]): Promise<Resource> {
  for (let attempt = 0; ; attempt++) {
    const writes: StoreWrite[] = [];
    for (const { nic, record } of fresh) {
      writes.push(ipClaim(nic.l3NetworkUuid, nic.ip, nic.uuid), macClaim(nic.mac, nic.uuid), { op: 'create', resource: record() });
    }
    const vmNics = ctx.data.nics.map(({ uuid, l3NetworkUuid, ip, mac, netmask, gateway, deviceId }) => ({ uuid, l3NetworkUuid, ip, mac, netmask, gateway, deviceId }));
    // with the placement the host step journaled (absent in a journal of an older version, which wrote it there)
    writes.push({ op: 'update', uuid: ctx.data.vm.uuid, patch: { ...ctx.data.placement, vmNics } });
    try {
      const written = await ctx.saveWith(writes);
      // the VM's every NIC written here: the start step's spec takes these records (issue 19: a NIC listing per create)
      if (fresh.length === ctx.data.nics.length) ctx.memo.set('nics', fresh.map((_, i) => written[3 * i + 2]!));
      return written.at(-1)!;
    } catch (e) {
      const c = claimRefused(e);
      const f = c && fresh.find(({ nic }) => (c.namespace === MAC_NAMESPACE ? nic.mac.toLowerCase() === c.key : c.namespace === ipNamespace(nic.l3NetworkUuid) && nic.ip === c.key));
      const taken = f && c.namespace !== MAC_NAMESPACE ? await ipTaken(ctx.store, f.nic.l3NetworkUuid, f.nic.ip, f.staticIp) : undefined;
      if (!f || taken || attempt >= MAC_TRIES) {
        // nothing claimed: the addresses are free again in the allocator's view (but the one another owner holds)
        const held = f && c.namespace !== MAC_NAMESPACE ? f.nic : undefined;
        for (const { nic } of fresh) if (nic !== held) ipUnclaimed(ctx.store, nic.l3NetworkUuid, nic.ip);
        throw taken ?? (f && c.namespace === MAC_NAMESPACE ? macExhausted(f.nic.uuid) : e);
      }
      if (c.namespace === MAC_NAMESPACE) f.nic.mac = randomMac();
      else {
        const { allocation: a } = await pickIp(ctx.store, { l3NetworkUuid: f.nic.l3NetworkUuid, owner: f.nic.uuid, newOwner: true });
        Object.assign(f.nic, { ip: a.ip, netmask: a.netmask, gateway: a.gateway, ipRangeUuid: a.ipRangeUuid });
      }
    }
  }
}

/**
 * A new volume's primary storage: the reservation's claim, the journal (the volume's storage in
 * `rec`) and the volume's record (unless it `exists`) in one commit (issue 19). Refused: the
 * storage is not kept. A resumed run's reservation was there already (no claim written): the
 * record then too, unless the journal is of an older version (claim, then record).
 */
async function claimVolumeStorage(ctx: Ctx, rec: VolRec, req: Parameters<typeof allocatePrimaryStorage>[1], exists: boolean, record: (psUuid: string) => StoreWrite): Promise<Resource> {
  let made = false;
  const { primaryStorage: ps } = await allocatePrimaryStorage(ctx.store, req, rec.uuid, {}, async (claim, at) => {
    rec.psUuid = at.uuid;
    try {
      await ctx.saveWith(exists ? [claim] : [claim, record(at.uuid)]);
    } catch (e) {
      delete rec.psUuid;
      throw e;
    }
    made = true;
  });
  rec.psUuid = ps.uuid;
  if (!made) {
    if (!exists) await ctx.saveWith([record(ps.uuid)]);
    else await ctx.save();
  }
  return ps;
}

const steps: Array<FlowStep<VmCreateData>> = [
  {
    name: 'record',
    // the journal's first write is the VM record's: one commit, and never one without the other
    journalsItself: true,
    async run(ctx) {
      const vm: Resource = { ...ctx.data.vm, state: 'Starting' };
      // the uuid is new: only a resumed run (which may follow a crash after it) looks first
      if (ctx.resumed) ctx.data.vm = (await ctx.store.get(vm.uuid)) ?? (await ctx.store.create(vm));
      else ctx.data.vm = (await ctx.saveWith([{ op: 'create', resource: vm }]))[0]!;
      injectFault(FLOW, 'record');
    },
    async rollback(ctx) {
      await ctx.store.delete(ctx.data.vm.uuid);
    },
  },
  {
    name: 'host',
    async run(ctx) {
      const d = deps(ctx);
      const vm = ctx.data.vm;
      const req: Parameters<typeof allocateHost>[1] = { cpuNum: Number(vm.cpuNum), memorySize: Number(vm.memorySize), l2NetworkUuids: await l2sOf(d, vm.l3NetworkUuids as string[], l3sRead(ctx)), hypervisorType: 'KVM' };
      if (typeof vm.requestedHostUuid === 'string') req.hostUuid = vm.requestedHostUuid;
      if (typeof vm.requestedClusterUuid === 'string') req.clusterUuid = vm.requestedClusterUuid;
      if (typeof vm.requestedZoneUuid === 'string') req.zoneUuid = vm.requestedZoneUuid;
      if (typeof vm.primaryStorageUuidForRootVolume === 'string') req.primaryStorageUuid = vm.primaryStorageUuidForRootVolume;
      if (typeof vm.allocatorStrategy === 'string') req.strategy = vm.allocatorStrategy as 'least-used';
      // resumed (maybe on another controller): the reservation may exist already; the store's
      // view finds it (allocation is idempotent per VM) where this process's may not
      if (ctx.resumed) req.fromStore = true;
      const a = await allocateHostFor(ctx.store, req, vm);
      ctx.data.hostUuid = a.hostUuid;
      ctx.data.clusterUuid = a.clusterUuid;
      ctx.memo.set('host', a.host);
      // the VM record gets its placement with its NICs in the next step (only store claims in
      // between, no agent call): journaled, so a resumed ips step writes it too
      ctx.data.placement = { hostUuid: a.hostUuid, lastHostUuid: a.hostUuid, clusterUuid: a.clusterUuid, zoneUuid: a.zoneUuid, hypervisorType: 'KVM' };
      // no save of its own (issue 19): the ips step's commit, the next store write of this flow
      // (only reads in between), journals the host with the NICs it claims; a crash before it
      // finds the journal at an earlier step, whose resumed run reaches this step again and
      // finds the reservation (allocation is idempotent per VM)
      injectFault(FLOW, 'host');
    },
    async rollback(ctx) {
      if (ctx.data.hostUuid) await releaseHost(ctx.store, ctx.data.hostUuid, ctx.data.vm.uuid);
    },
  },
  {
    name: 'ips',
    async run(ctx) {
      const vm = ctx.data.vm;
      const statics = (vm.staticIps as Array<{ l3NetworkUuid: string; ip: string }> | undefined) ?? [];
      const clusterUuid = await clusterOf(ctx);
      const p = ctx.data.pendingNic;
      if (p) {
        // a journal of an older version, resumed after a crash mid-claim (or before the save
        // that journals the NIC): give back what that NIC may hold and claim afresh
        await releaseIpsOf(ctx.store, p.l3NetworkUuid, p.uuid);
        await releaseMacsOf(ctx.store, p.uuid);
        await ctx.store.delete(p.uuid);
        delete ctx.data.pendingNic;
      }
      const nicRecord = (nic: NicRec, i: number): Resource => ({
        ...nic,
        kind: 'vm-nic',
        name: `${vm.name}-nic${i}`,
        createDate: '',
        lastOpDate: '',
        ownerAccountUuid: vm.ownerAccountUuid,
        tags: [],
        parentUuid: vm.uuid,
        vmInstanceUuid: vm.uuid,
        clusterUuid,
        internalName: `vn${nic.uuid.replace(/-/g, '').slice(0, 11)}`,
      });
      // the NICs whose claims and records are written with the VM's vmNics in one commit at the end of the step
      const fresh: FreshNic[] = [];
      for (const [i, l3] of (vm.l3NetworkUuids as string[]).entries()) {
        const had = ctx.data.nics.find((n) => n.l3NetworkUuid === l3);
        if (had) {
          // journaled before a crash: its record (and its claims, written with it) may not have been written
          if (ctx.resumed && !(await ctx.store.get(had.uuid))) fresh.push({ nic: had, record: () => nicRecord(had, i), staticIp: statics.some((s) => s.l3NetworkUuid === l3) });
          continue;
        }
        const nicUuid = randomUUID();
        const req: Parameters<typeof pickIp>[1] = { l3NetworkUuid: l3, owner: nicUuid, newOwner: true };
        const st = statics.find((s) => s.l3NetworkUuid === l3);
        if (st) req.ip = st.ip;
        // picked, claimed by the step's commit (commitNics)
        const { allocation: a } = await pickIp(ctx.store, req);
        const nic: NicRec = { uuid: nicUuid, l3NetworkUuid: l3, ip: a.ip, mac: randomMac(), netmask: a.netmask, gateway: a.gateway, ipRangeUuid: a.ipRangeUuid, deviceId: i };
        // journaled by the commit that claims its address and MAC and writes its record (commitNics)
        ctx.data.nics.push(nic);
        fresh.push({ nic, record: () => nicRecord(nic, i), staticIp: st !== undefined });
      }
      ctx.data.vm = await commitNics(ctx, fresh);
      // guarded before it boots: the firewall is applied by the time the tap appears (rules match tap names)
      if (Array.isArray(vm.securityGroupUuids)) await joinVmGroups(ctx.store, vm.securityGroupUuids as string[], ctx.data.nics);
      injectFault(FLOW, 'ips');
    },
    async rollback(ctx) {
      const p = ctx.data.pendingNic;
      if (p) {
        // claimed (or not) but never journaled as a NIC: release whatever that owner holds
        await releaseIpsOf(ctx.store, p.l3NetworkUuid, p.uuid);
        await releaseMacsOf(ctx.store, p.uuid);
        await ctx.store.delete(p.uuid);
      }
      for (const n of ctx.data.nics) {
        await releaseIp(ctx.store, n.l3NetworkUuid, n.ip, n.uuid);
        await releaseMac(ctx.store, n.mac, n.uuid);
        await ctx.store.delete(n.uuid);
      }
    },
  },
  {
    name: 'root-volume',
    async run(ctx) {
      const d = deps(ctx);
      const vm = ctx.data.vm;
      const hostUuid = ctx.data.hostUuid!;
      const clusterUuid = await clusterOf(ctx);
      const image = await mustGet(ctx.store, String(vm.imageUuid), 'image');
      if (image.status !== 'Ready') throw new TStackError('INVALID_ARGUMENT', `image ${image.name} is ${String(image.status)}, not Ready`, { field: 'imageUuid' });
      const iso = image.mediaType === 'ISO';
      let rootSize = Number(vm.rootDiskSize ?? 0);
      if (typeof vm.rootDiskOfferingUuid === 'string') rootSize = Number((await mustGet(ctx.store, vm.rootDiskOfferingUuid, 'disk-offering')).diskSize);
      const size = Math.max(rootSize, iso ? 0 : Number(image.size ?? 0));
      const volUuid = ctx.data.root?.uuid ?? randomUUID();
      // journaled with the storage's claim (the commit below): a crash before it resumes an
      // earlier step, and nothing of this one was written (issue 19: was a save of its own)
      ctx.data.root = { uuid: volUuid, size, hostUuid };
      const psReq: Parameters<typeof allocatePrimaryStorage>[1] = { size, clusterUuid };
      if (typeof vm.primaryStorageUuidForRootVolume === 'string') psReq.primaryStorageUuid = vm.primaryStorageUuidForRootVolume;
      const record = (psUuid: string): StoreWrite => ({
        op: 'create',
        resource: {
          uuid: volUuid, kind: 'volume', name: `ROOT-for-${vm.name}`, createDate: '', lastOpDate: '', ownerAccountUuid: vm.ownerAccountUuid, tags: [],
          type: 'Root', state: 'Enabled', status: 'Creating', vmInstanceUuid: vm.uuid, primaryStorageUuid: psUuid, hostUuid, clusterUuid, rootImageUuid: image.uuid, deviceId: 0, size,
        },
      });
      // the volume's uuid is new: only a resumed run looks whether its record was written
      const exists = ctx.resumed && (await ctx.store.get(volUuid)) !== undefined;
      const ps = await claimVolumeStorage(ctx, ctx.data.root, psReq, exists, record);
      ctx.memo.set('rootPs', ps);
      const ref = (image.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined)?.[0];
      if (!ref) throw new TStackError('INVALID_ARGUMENT', `image ${image.name} is on no backup storage`, { field: 'imageUuid' });
      ctx.progress(30, 'image cache');
      // stable task ids: sent again after a crash, the agent answers with the first run; an image
      // this controller saw the host cache is not pulled again (an ISO's path goes into the VM: always asked)
      const cacheArgs: Parameters<typeof withCachedImage>[1] = { hostUuid, ps, image, backupStorageUuid: ref.backupStorageUuid, taskId: ctx.taskId('cache'), reuse: !iso };
      const host = flowHost(ctx);
      if (host) cacheArgs.host = host;
      const { cached, made: vol } = await withCachedImage(d, cacheArgs, (_c, again, h) =>
        iso
          ? callOn(d, h, 'storageagent', S.CreateEmptyVolume, { ps: psSpec(ps), volumeUuid: volUuid, size }, { taskId: ctx.taskId(`vol${again}`) })
          : callOn(d, h, 'storageagent', S.CreateRootVolume, rootSize > Number(image.size ?? 0) ? { ps: psSpec(ps), volumeUuid: volUuid, imageUuid: image.uuid, size: rootSize } : { ps: psSpec(ps), volumeUuid: volUuid, imageUuid: image.uuid }, { taskId: ctx.taskId(`vol${again}`) }),
      );
      const patch: Partial<Resource> = { rootVolumeUuid: volUuid, allVolumes: [volUuid] };
      if (iso && cached.source.type === 'file') {
        patch._isoPath = cached.source.path;
        patch._bootFromIso = true;
      }
      // the volume made and the VM's root: one commit
      const writes: StoreWrite[] = [
        { op: 'update', uuid: volUuid, patch: { status: 'Ready', source: vol.source, installPath: vol.installPath, format: vol.format, size: vol.size, actualSize: vol.actualSize } },
        { op: 'update', uuid: vm.uuid, patch },
      ];
      const done = ([root, next]: Array<Resource | undefined>): void => {
        ctx.memo.set('root', root);
        ctx.data.vm = next!;
      };
      if (hasDataVolumes(vm) || vm.strategy === 'CreateStopped') done(await ctx.store.batch(writes));
      else {
        // with the start step's save (issue 19: a commit fewer): the bridges and dhcp steps in
        // between read neither record from the store, and until that save the journal names
        // this step or an earlier one, so a crash before it runs this step again (the agent
        // answers its task ids with the first run). The journal and the next steps see the root
        // now; the records' own copies come with the commit.
        ctx.data.vm = { ...vm, ...patch };
        ctx.defer(writes, done);
      }
      injectFault(FLOW, 'root-volume');
    },
    async rollback(ctx) {
      if (ctx.data.root) await deleteVolumeEverywhere(deps(ctx), ctx.data.root, ctx.data.hostUuid);
    },
  },
  {
    name: 'data-volumes',
    async run(ctx) {
      const d = deps(ctx);
      const vm = ctx.data.vm;
      const hostUuid = ctx.data.hostUuid!;
      // one empty volume per disk offering, then one linked clone per DataVolumeTemplate image
      const offerings = (vm.dataDiskOfferingUuids as string[] | undefined) ?? [];
      const templates = (vm.dataVolumeTemplateUuids as string[] | undefined) ?? [];
      const sources = [...offerings.map((uuid) => ({ uuid, image: false })), ...templates.map((uuid) => ({ uuid, image: true }))];
      const clusterUuid = sources.length ? await clusterOf(ctx) : '';
      for (const [i, src] of sources.entries()) {
        if (ctx.data.data[i]?.psUuid && (await ctx.store.get(ctx.data.data[i]!.uuid))?.status === 'Ready') continue;
        const o = src.image ? await dataTemplate(ctx, src.uuid, i - offerings.length) : await mustGet(ctx.store, src.uuid, 'disk-offering');
        const rec: VolRec = ctx.data.data[i] ?? { uuid: randomUUID(), size: Number(src.image ? o.size : o.diskSize), hostUuid };
        ctx.data.data[i] = rec;
        await ctx.save();
        const record = (psUuid: string): StoreWrite => ({
          op: 'create',
          resource: {
            uuid: rec.uuid, kind: 'volume', name: `DATA-${i + 1}-for-${vm.name}`, createDate: '', lastOpDate: '', ownerAccountUuid: vm.ownerAccountUuid, tags: [],
            type: 'Data', state: 'Enabled', status: 'Creating', vmInstanceUuid: vm.uuid, primaryStorageUuid: psUuid, hostUuid, clusterUuid, deviceId: i + 1, size: rec.size, format: 'qcow2',
            ...(src.image ? { imageUuid: src.uuid } : { diskOfferingUuid: src.uuid }),
          },
        });
        const exists = (await ctx.store.get(rec.uuid)) !== undefined;
        const ps = await claimVolumeStorage(ctx, rec, { size: rec.size, clusterUuid }, exists, record);
        let vol: S.VolumeInfo;
        if (src.image) {
          const ref = (o.backupStorageRefs as Array<{ backupStorageUuid: string }>)[0]!;
          vol = (
            await withCachedImage(d, { hostUuid, ps, image: o, backupStorageUuid: ref.backupStorageUuid, taskId: ctx.taskId(`cache${i}`), reuse: true }, (_c, again, h) =>
              callOn(d, h, 'storageagent', S.CreateRootVolume, { ps: psSpec(ps), volumeUuid: rec.uuid, imageUuid: o.uuid }, { taskId: ctx.taskId(`vol${i}${again}`) }),
            )
          ).made;
        } else {
          vol = await callHost(d, hostUuid, 'storageagent', S.CreateEmptyVolume, { ps: psSpec(ps), volumeUuid: rec.uuid, size: rec.size }, { taskId: ctx.taskId(`vol${i}`) });
        }
        await ctx.store.update(rec.uuid, { status: 'Ready', source: vol.source, installPath: vol.installPath, format: vol.format, size: vol.size, actualSize: vol.actualSize });
      }
      if (ctx.data.data.length) ctx.data.vm = await ctx.store.update(vm.uuid, { allVolumes: [ctx.data.root!.uuid, ...ctx.data.data.map((v) => v.uuid)] });
      injectFault(FLOW, 'data-volumes');
    },
    async rollback(ctx) {
      for (const v of ctx.data.data) await deleteVolumeEverywhere(deps(ctx), v, ctx.data.hostUuid);
    },
  },
  {
    name: 'bridges',
    async run(ctx) {
      const bridges: Record<string, string> = {};
      // a bridge this controller saw the host make is not asked for again (startOnHost asks if it is gone)
      const host = flowHost(ctx);
      for (const l3 of ctx.data.vm.l3NetworkUuids as string[]) bridges[l3] = await bridgeFor(deps(ctx), ctx.data.hostUuid!, l3, { reuse: true, l3s: l3sRead(ctx), ...(host ? { host } : {}) });
      ctx.data.bridges = bridges;
      injectFault(FLOW, 'bridges');
    },
  },
  {
    name: 'dhcp',
    async run(ctx) {
      // not journaled (issue 19): the flat keys are desired state made from the store, and what
      // the rollback does (mark them again) the record's rollback does too (a VM's delete marks
      // its keys), so a crash here needs nothing from the journal
      ctx.data.services = ctx.data.nics.map((n) => n.uuid);
      // the bridges step has just made the bridges (addServices would ask the host a second time)
      await syncVmFlat(deps(ctx), ctx.data.vm, ctx.data.hostUuid!, l3sRead(ctx));
      injectFault(FLOW, 'dhcp');
    },
    async rollback(ctx) {
      // the NICs and the record go in the earlier steps' rollbacks; each change marks the key again
      if (ctx.data.services.length && ctx.data.hostUuid) markVm(deps(ctx).reconcile, { ...ctx.data.vm, hostUuid: ctx.data.hostUuid });
    },
  },
  {
    name: 'start',
    async run(ctx) {
      const d = deps(ctx);
      const vm = ctx.data.vm;
      if (vm.strategy === 'CreateStopped') {
        await releaseHost(ctx.store, ctx.data.hostUuid!, vm.uuid);
        ctx.data.vm = await ctx.store.update(vm.uuid, { state: 'Stopped', hostUuid: undefined });
        return;
      }
      ctx.data.started = true;
      // with the root volume's deferred writes (ctx.defer), before vm/start
      await ctx.save();
      ctx.progress(80, 'starting the VM');
      const known: KnownForSpec = { root: ctx.memo.get('root') as Resource | undefined, rootPs: ctx.memo.get('rootPs') as Resource | undefined };
      const offering = ctx.memo.get('offering') as Resource | undefined;
      if (offering) known.offering = offering;
      const nics = ctx.memo.get('nics') as Resource[] | undefined;
      if (nics) known.nics = nics;
      if (ctx.data.bridges) known.bridges = ctx.data.bridges;
      const host = flowHost(ctx);
      if (host) known.host = host;
      // no data volume asked for: none to read (issue 19: a volume listing per create)
      if (ctx.data.data.length === 0) known.dataVolumes = [];
      // the VM as that save wrote it (with its root)
      const spec = await startOnHost(d, ctx.data.vm, ctx.data.hostUuid!, known, { taskId: ctx.taskId('start') });
      // Running with the flow's end (outcome, journal delete): one commit; a crash before it
      // resumes this step, whose vm/start (same task id) answers with its first run
      ctx.finishWith([{ op: 'update', uuid: vm.uuid, patch: { state: 'Running', serialLogPath: spec.serialLogPath } }], ([r]) => (ctx.data.vm = r!));
      injectFault(FLOW, 'start');
    },
    async rollback(ctx) {
      if (ctx.data.started && ctx.data.hostUuid) await callHost(deps(ctx), ctx.data.hostUuid, 'kvmagent', K.VmDestroy, { uuid: ctx.data.vm.uuid });
    },
  },
];

// journal: 'saves' — each step saves before its first effect a rollback undoes (issue 19)
// an acknowledged create is finished by whichever controller resumes it: every step is safe to
// run again (allocations idempotent per VM/NIC/volume, records looked up first when resumed,
// agent commands with stable task ids), including the earlier ones a 'saves' journal may name
export const vmCreateFlow: FlowDef<VmCreateData> = { name: FLOW, steps, onResume: 'complete', journal: 'saves' };

async function createVm(body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  // a VM uses its account's resources and the admin's (the API checked what the caller may see)
  const usable = (r: Resource): boolean => r.ownerAccountUuid === oc.principal.accountUuid || r.ownerAccountUuid === oc.adminAccountUuid;
  // the API's check of the body, held to that rule (issue 19: the body was prepared twice, its references read twice)
  const p = oc.prepared ?? (await prepareCreate(d.store, mustKindDef('vm-instance'), body, { ...(oc.newUuid ? { uuid: oc.newUuid } : {}), ownerAccountUuid: oc.principal.accountUuid, canUse: usable }));
  if (oc.prepared) recheckUse(oc.prepared, usable);
  // the console password never leaves the API ('_'); one is made when none was given
  const { consolePassword, ...rest } = p.resource;
  const vm: Resource = { ...rest, state: 'Starting', vmNics: [], allVolumes: [], _consolePassword: typeof consolePassword === 'string' ? consolePassword : randomBytes(6).toString('base64url') } as Resource;
  if (Array.isArray(vm.securityGroupUuids)) await checkVmGroups(d.store, vm.securityGroupUuids as string[], vm.l3NetworkUuids as string[], oc.principal.accountUuid, oc.principal.isAdmin);
  faultPause(`${FLOW}:accepted`); // tests: frozen after the job was acknowledged, before the flow's journal
  const runOpts: Parameters<typeof d.engine.run>[2] = { id: oc.job?.jobUuid ?? randomUUID(), lockKeys: [vm.uuid] };
  if (oc.job) {
    runOpts.onProgress = (pc, m) => oc.job!.progress(pc, m);
    // a completed create is told from one never started by its outcome, not by its VM (deleted
    // since, it must not be made again by the job's resumer: api/resume.ts)
    runOpts.keepOutcome = true;
  }
  // the L3 records the check of the body read (l3sRead: what the flow takes of them cannot change)
  const memo = new Map<string, unknown>([['l3s', new Map(p.used.filter((u) => u.kind === 'l3-network').map((u) => [u.resource.uuid, u.resource]))]]);
  // and the instance offering (the start step's QoS: issue 19, the offering was read twice per create)
  const offering = p.used.find((u) => u.kind === 'instance-offering')?.resource;
  if (offering) memo.set('offering', offering);
  runOpts.memo = memo;
  return (await d.engine.run(vmCreateFlow, { vm, nics: [], data: [], services: [] }, runOpts)).vm;
}

// ---------------------------------------------------------------------------------------------
// lifecycle

async function inQueue<T>(d: CloudDeps, vmUuid: string, fn: () => Promise<T>): Promise<T> {
  return d.engine.queues.run([vmUuid], fn);
}

/** A single-use console token for the asking account; the browser opens `url` (the console proxy) with it. */
async function consoleOf(vm: Resource, _p: Record<string, unknown>, oc: OpContext): Promise<unknown> {
  const d = oc;
  if (vm.state !== 'Running' && vm.state !== 'Paused') throw new TStackError('CONFLICT', `VM ${vm.name} is ${String(vm.state)}; the console needs it running`);
  const hostUuid = String(vm.hostUuid);
  const c = await callHost(d, hostUuid, 'kvmagent', K.VmConsole, { uuid: vm.uuid });
  const t = await issueConsoleToken(d.store, { vmUuid: vm.uuid, accountUuid: oc.principal.accountUuid, hostUuid, vncHost: c.host, vncPort: c.port });
  return { vmInstanceUuid: vm.uuid, protocol: c.protocol, url: `/v1/console/${t.token}`, token: t.token, expiresAt: t.expiresAt };
}

// ---------------------------------------------------------------------------------------------
// VM state from the kvmagent's events

export function watchVmEvents(d: CloudDeps): () => void {
  return d.bus.onAgentEvent(K.KvmEvents.vmStateChanged, async (e) => {
    const vmUuid = String(e.data.vmUuid ?? '');
    const vm = await d.store.get(vmUuid);
    if (!vm || vm.kind !== 'vm-instance' || vm.hostUuid !== e.hostUuid) return;
    if (d.engine.queues.busyKeys.includes(vmUuid)) return; // an operation owns the VM now
    const to = String(e.data.to);
    const inv = to === 'Running' ? 'Running' : to === 'Paused' || to === 'Suspended' ? 'Paused' : to === 'Stopped' || to === 'Crashed' ? 'Stopped' : undefined;
    if (!inv || inv === vm.state || !['Running', 'Paused', 'Stopped', 'Unknown'].includes(String(vm.state))) return;
    await inQueue(d, vmUuid, async () => {
      const cur = await d.store.get(vmUuid);
      if (!cur || cur.state === inv || !['Running', 'Paused', 'Unknown'].includes(String(cur.state))) return;
      const patch: Partial<Resource> = {};
      if (inv === 'Stopped') {
        await releaseHost(d.store, String(cur.hostUuid), vmUuid);
        patch.hostUuid = undefined;
        patch.lastHostUuid = cur.hostUuid;
        // stopped without an API call (QEMU killed, guest poweroff): NeverStop brings it back (compute/ha.ts)
        if (cur.haLevel === 'NeverStop') patch._haPending = `stopped on its host (${String(e.data.reason ?? 'no reason given')})`;
      }
      await d.store.transition(vmUuid, String(cur.state), inv, patch);
      log.info({ vm: vmUuid, from: cur.state, to: inv, reason: e.data.reason }, 'VM state changed on its host');
    });
  });
}

const once = (reg: ApiRegistry, col: string, name: string, spec: Parameters<ApiRegistry['registerAction']>[2]): void => {
  if (!reg.action(col, name)?.run) reg.registerAction(col, name, spec);
};

export function registerComputeApi(reg: ApiRegistry): void {
  reg.setCreate('vm-instances', { long: true, resumable: true, run: createVm });
  // flows under the job's uuid: a controller taking the job over sees it through (vm-power.ts, vm-destroy.ts)
  reg.setDelete('vm-instances', { long: true, resumable: true, run: destroyVm });
  once(reg, 'vm-instances', 'start', { long: true, resumable: true, run: startVm });
  once(reg, 'vm-instances', 'stop', { long: true, resumable: true, run: stopVm });
  once(reg, 'vm-instances', 'reboot', { long: true, resumable: true, run: powerAction('reboot') });
  once(reg, 'vm-instances', 'pause', { long: true, resumable: true, run: powerAction('pause') });
  once(reg, 'vm-instances', 'resume', { long: true, resumable: true, run: powerAction('resume') });
  once(reg, 'vm-instances', 'recover', { long: true, resumable: true, run: recoverVm });
  once(reg, 'vm-instances', 'expunge', { long: true, resumable: true, run: expungeVm });
  once(reg, 'vm-instances', 'requestConsoleAccess', { long: false, schema: Obj({}), description: 'A single-use console token, valid 60 s, for this account: {url, token, expiresAt}; open url as a WebSocket (RFB, no password) with subprotocols binary and tstack-session.<session token>', run: consoleOf });
}

