// The quotas of a normal account (the manual's 账户管理 > 修改配额): names, defaults, and what
// each resource — or each request, before it runs — charges against them. One table, so a
// kind a later issue adds (VIPs, EIPs, load balancers…) is counted by adding a line here.
import type { InventoryStore, Resource } from '../store/types.js';
import { VM_STATES_ON_HOST } from '../model/states.js';

const GiB = 1024 ** 3;
const TiB = 1024 * GiB;

export interface QuotaDef {
  name: string;
  default: number;
  description: string;
}

export const QUOTAS: readonly QuotaDef[] = [
  { name: 'vm.totalNum', default: 20, description: 'VMs (any state until expunged)' },
  { name: 'vm.num', default: 20, description: 'running VMs' },
  { name: 'vm.cpuNum', default: 80, description: 'vCPUs of the VMs (until expunged)' },
  { name: 'vm.memorySize', default: 80 * GiB, description: 'memory of the VMs in bytes (until expunged)' },
  { name: 'volume.data.num', default: 40, description: 'data volumes' },
  { name: 'volume.capacity', default: 10 * TiB, description: 'bytes of all volumes' },
  { name: 'image.num', default: 20, description: 'images' },
  { name: 'image.size', default: 10 * TiB, description: 'bytes of all images' },
  { name: 'l3.num', default: 20, description: 'L3 networks' },
  { name: 'securityGroup.num', default: 20, description: 'security groups' },
  { name: 'vip.num', default: 20, description: 'virtual IPs' },
  { name: 'eip.num', default: 20, description: 'elastic IPs' },
  { name: 'portForwarding.num', default: 20, description: 'port forwarding rules' },
  { name: 'loadBalancer.num', default: 20, description: 'load balancers' },
  { name: 'listener.num', default: 20, description: 'load balancer listeners' },
  { name: 'snapshot.volume.num', default: 200, description: 'volume snapshots' },
  { name: 'vxlan.num', default: 8, description: 'VXLAN networks' },
];

export const QUOTA_NAMES: ReadonlySet<string> = new Set(QUOTAS.map((q) => q.name));
export const quotaDefaults = (): Record<string, number> => Object.fromEntries(QUOTAS.map((q) => [q.name, q.default]));

export type Charge = Record<string, number>;

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);

/** Kinds counted by one `<name>` each (and nothing else). */
const COUNTED: Record<string, string> = {
  'l3-network': 'l3.num',
  'security-group': 'securityGroup.num',
  vip: 'vip.num',
  eip: 'eip.num',
  'port-forwarding-rule': 'portForwarding.num',
  'load-balancer': 'loadBalancer.num',
  'load-balancer-listener': 'listener.num',
  'volume-snapshot': 'snapshot.volume.num',
};

export const CHARGED_KINDS: ReadonlySet<string> = new Set(['vm-instance', 'volume', 'image', 'l2-network', ...Object.keys(COUNTED)]);

/** A VXLAN network (not a pool: pools are the admin's infrastructure). */
const isVxlan = (r: Record<string, unknown>): boolean => (typeof r.type === 'string' && /vxlan/i.test(r.type) && !/pool/i.test(r.type)) || (r.type === undefined && r.poolUuid !== undefined);

/** What an existing resource holds (every name of its kind, zeros included, so a re-sync lowers too). */
export function chargeOf(r: Resource): Charge | undefined {
  switch (r.kind) {
    case 'vm-instance':
      return { 'vm.totalNum': 1, 'vm.num': VM_STATES_ON_HOST.includes(r.state as never) ? 1 : 0, 'vm.cpuNum': num(r.cpuNum), 'vm.memorySize': num(r.memorySize) };
    case 'volume':
      return { 'volume.data.num': r.type === 'Root' ? 0 : 1, 'volume.capacity': num(r.size) };
    case 'image':
      return { 'image.num': 1, 'image.size': num(r.size) };
    case 'l2-network':
      return isVxlan(r) ? { 'vxlan.num': 1 } : undefined;
    default: {
      const name = COUNTED[r.kind];
      return name ? { [name]: 1 } : undefined;
    }
  }
}

const add = (a: Charge, b: Charge): Charge => {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
};

/** The size a disk offering (by uuid) gives, 0 when unknown. */
async function offeringSize(store: InventoryStore, uuid: unknown): Promise<number> {
  if (typeof uuid !== 'string') return 0;
  const o = await store.get(uuid);
  return o?.kind === 'disk-offering' ? num(o.diskSize) : 0;
}

/**
 * What a create request will hold once done, computed from its (not yet validated) body:
 * anything malformed counts as 0 and the route's validation refuses it after.
 * Undefined: the kind is not charged.
 */
export async function chargeOfCreate(kind: string, body: Record<string, unknown>, store: InventoryStore): Promise<Charge | undefined> {
  switch (kind) {
    case 'vm-instance': {
      let cpu = num(body.cpuNum);
      let mem = num(body.memorySize);
      if (typeof body.instanceOfferingUuid === 'string') {
        const o = await store.get(body.instanceOfferingUuid);
        if (o?.kind === 'instance-offering') {
          cpu = num(o.cpuNum);
          mem = num(o.memorySize);
        }
      }
      let c: Charge = { 'vm.totalNum': 1, 'vm.cpuNum': cpu, 'vm.memorySize': mem };
      if (body.strategy !== 'CreateStopped') c['vm.num'] = 1;
      const disks = Array.isArray(body.dataDiskOfferingUuids) ? body.dataDiskOfferingUuids : [];
      if (disks.length) {
        let bytes = 0;
        for (const d of disks) bytes += await offeringSize(store, d);
        c = add(c, { 'volume.data.num': disks.length, 'volume.capacity': bytes });
      }
      if (num(body.rootDiskSize)) c = add(c, { 'volume.capacity': num(body.rootDiskSize) });
      return c;
    }
    case 'volume': {
      let size = num(body.diskSize) || (await offeringSize(store, body.diskOfferingUuid));
      if (!size && typeof body.imageUuid === 'string') size = num((await store.get(body.imageUuid))?.size);
      return { 'volume.data.num': 1, 'volume.capacity': size };
    }
    case 'image':
      return { 'image.num': 1, 'image.size': num(body.size) };
    case 'l2-network':
      return isVxlan(body) ? { 'vxlan.num': 1 } : undefined;
    default: {
      const name = COUNTED[kind];
      return name ? { [name]: 1 } : undefined;
    }
  }
}

/**
 * What an action adds: `self` = the resource's own new amounts (a start: it runs; a resize:
 * its new size), `created` = what the resources the action makes will hold (a clone, a snapshot).
 */
export function chargeOfAction(r: Resource, action: string, params: Record<string, unknown>): { self?: Charge; created?: Charge } | undefined {
  if (r.kind === 'vm-instance' && (action === 'start' || action === 'resume') && !VM_STATES_ON_HOST.includes(r.state as never)) return { self: { 'vm.num': 1 } };
  if (r.kind === 'vm-instance' && action === 'clone') {
    const n = Math.max(1, Math.min(100, Math.floor(num(params.count) || (Array.isArray(params.names) ? params.names.length : 1))));
    return { created: { 'vm.totalNum': n, 'vm.num': n, 'vm.cpuNum': n * num(r.cpuNum), 'vm.memorySize': n * num(r.memorySize) } };
  }
  if (r.kind === 'volume' && action === 'createSnapshot') return { created: { 'snapshot.volume.num': 1 } };
  if (r.kind === 'volume' && action === 'resize' && num(params.size) > num(r.size)) return { self: { 'volume.capacity': num(params.size) } };
  return undefined;
}
