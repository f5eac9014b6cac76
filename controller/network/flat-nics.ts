// The NICs a flat L3 serves, with what the desired state needs of their VMs. Read fresh from the
// inventory (storeNics: two lists per L3), or from FlatNicCache: the same rows kept in memory and
// fed by the store's resource events, so a reconcile apply of a 250-VM L3 costs no inventory scan.
//
// The cache never guesses. A NIC whose VM it has not seen (events of one create can come in
// either order, a relayed one late) makes it read just that VM on the next look. A load replays
// the events that came while it read (it read either side of each change); refresh() or a flood
// of them makes it used once, not kept. Events relayed from other controllers arrive late or may
// be lost, so the periodic reconcile pass refresh()es the cache: at worst a key is applied from
// state one pass old, then repaired (what the periodic pass is for).
//
// The cache also keeps what every apply read of the L3 itself (the L3, its L2, its ip-ranges:
// three of the four store reads of an apply), on the same terms: any event of those kinds drops them
// all (they change rarely), a read that such an event overlapped is not kept, refresh() drops them.
import type { InventoryStore, Resource } from '../store/types.js';
import type { EventBus, ResourceEvent } from '../events/bus.js';

/** One NIC to serve, in the order names are given (oldest VM first: it keeps a duplicate name). */
export interface LiveNic {
  nicUuid: string;
  ip: string;
  mac: string;
  vmUuid: string;
  /** The host that serves it (servedOn). */
  host: string;
  /** vmHostname(vm). */
  hostname: string;
  userData?: string;
  sshKey?: string;
}

export interface NicSource {
  /** The NICs on an L3 whose VM still needs them, oldest VM first. */
  liveNics(l3Uuid: string): Promise<readonly LiveNic[]>;
  /** Forget what is kept (the periodic pass re-reads the inventory). */
  refresh?(): void;
  /** An L3 or L2 network as the inventory has it (kept in memory by FlatNicCache); not to be modified. */
  network?(uuid: string): Promise<Resource | undefined>;
  /** The ip-ranges of an L3, as store.byParent orders them (kept in memory by FlatNicCache); not to be modified. */
  ranges?(l3Uuid: string): Promise<readonly Resource[]>;
}

/** VM states whose NICs are served nowhere. */
const GONE = new Set(['Destroying', 'Destroyed', 'Expunging', 'Expunged']);
export const servedOn = (vm: Resource): string | undefined => (GONE.has(String(vm.state)) ? undefined : ((vm.hostUuid ?? vm.lastHostUuid) as string | undefined));

export function vmHostname(vm: Resource): string {
  if (typeof vm.hostname === 'string' && vm.hostname) return vm.hostname;
  const n = String(vm.name).toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(n) ? n : `vm-${vm.uuid.slice(0, 8)}`;
}

/** What a NIC contributes, by itself. */
interface NicRow {
  uuid: string;
  vmUuid: string;
  ip: string;
  mac: string;
  deviceId: string;
}

/** What a VM contributes: undefined host when its NICs are served nowhere. */
interface VmRow {
  uuid: string;
  host: string | undefined;
  hostname: string;
  createDate: string;
  userData?: string;
  sshKey?: string;
}

const nicRow = (n: Resource): NicRow => ({ uuid: n.uuid, vmUuid: String(n.parentUuid), ip: String(n.ip), mac: String(n.mac), deviceId: String(n.deviceId ?? 0) });

function vmRow(vm: Resource): VmRow {
  const r: VmRow = { uuid: vm.uuid, host: servedOn(vm), hostname: vmHostname(vm), createDate: String(vm.createDate ?? '') };
  if (typeof vm.userData === 'string') r.userData = vm.userData;
  if (typeof vm.sshKey === 'string' && vm.sshKey) r.sshKey = vm.sshKey;
  return r;
}

/** Same row (what a served NIC shows of its VM, and its place in the order)? */
const sameVmRow = (a: VmRow, b: VmRow): boolean => a.host === b.host && a.hostname === b.hostname && a.createDate === b.createDate && a.userData === b.userData && a.sshKey === b.sshKey;

function liveNic(nicUuid: string, ip: string, mac: string, vm: VmRow & { host: string }): LiveNic {
  const x: LiveNic = { nicUuid, ip, mac, vmUuid: vm.uuid, host: vm.host, hostname: vm.hostname };
  if (vm.userData !== undefined) x.userData = vm.userData;
  if (vm.sshKey !== undefined) x.sshKey = vm.sshKey;
  return x;
}

/**
 * Each NIC row's LiveNic and sort key, with the VM row they were made from. A view replaces a
 * row only when it changed, so a join after one change reuses every other NIC's, and what is made
 * from them per object downstream (the layout's DNS records, their JSON text) is reused too
 * (issue 19: an L3 changes with every create, and each change rebuilt all of it).
 */
const joinedOf = new WeakMap<NicRow, { vm: VmRow; x: LiveNic; key: string }>();

/** The served NICs of an L3 from its rows, in name order. */
function join(nics: Iterable<NicRow>, vms: Map<string, VmRow>): LiveNic[] {
  // the kept entries are sorted themselves (no [key, nic] pair per NIC per join: at 10,000 NICs
  // an L3 made ~10,000 short-lived arrays per change, issue 19)
  const out: Array<{ x: LiveNic; key: string }> = [];
  for (const n of nics) {
    const vm = vms.get(n.vmUuid);
    if (!vm || vm.host === undefined) continue;
    let j = joinedOf.get(n);
    if (j?.vm !== vm) joinedOf.set(n, (j = { vm, x: liveNic(n.uuid, n.ip, n.mac, vm as VmRow & { host: string }), key: `${vm.createDate}|${vm.uuid}|${n.deviceId}` }));
    out.push(j);
  }
  out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const live = new Array<LiveNic>(out.length);
  for (let i = 0; i < out.length; i++) live[i] = out[i]!.x;
  return live;
}

async function loadRows(store: InventoryStore, l3Uuid: string): Promise<{ nics: NicRow[]; vms: Map<string, VmRow> }> {
  const nics = (await store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3Uuid }] })).items.map(nicRow);
  if (nics.length === 0) return { nics, vms: new Map() };
  const vmUuids = [...new Set(nics.map((n) => n.vmUuid))];
  const vms = new Map<string, VmRow>();
  // a query takes at most 4,096 values per '?=': an L3 with more VMs failed every flat apply
  for (let i = 0; i < vmUuids.length; i += 4000) {
    for (const v of (await store.list({ kind: 'vm-instance', filters: [{ field: 'uuid', op: '?=', value: vmUuids.slice(i, i + 4000) }] })).items) vms.set(v.uuid, vmRow(v));
  }
  return { nics, vms };
}

/** Straight from the inventory, every time. */
export function storeNics(store: InventoryStore): NicSource {
  return {
    async liveNics(l3Uuid) {
      const { nics, vms } = await loadRows(store, l3Uuid);
      return join(nics, vms);
    },
  };
}

interface View {
  nics: Map<string, NicRow>;
  /** How many of `nics` each VM has (an event of a VM with NICs here always concerns the view). */
  held: Map<string, number>;
  /** The VMs of those NICs, and VMs that name this L3 (their NICs may follow). */
  vms: Map<string, VmRow>;
  /** join() of the above, until either changes. */
  joined?: readonly LiveNic[];
  /** VMs whose row changed since `joined` without moving or hiding their NICs (the next read patches just those). */
  patch?: Set<string>;
  /**
   * VMs of held NICs that the view has not seen (a NIC's event came before its VM's, or after
   * the view was loaded without it): the next read fetches just those, not the whole L3.
   */
  missing?: Set<string>;
  /** A read of missing VMs in flight: `want` are followed by events meanwhile, and an event's row wins over the read's. */
  filling?: { done: Promise<void>; want: Set<string>; touched: Set<string> };
}

/** Events a load buffers at most before it gives up keeping its result (used once, as read). */
const MAX_BUFFERED = 100_000;

function newView(nics: NicRow[], vms: Map<string, VmRow>): View {
  const v: View = { nics: new Map(), held: new Map(), vms };
  for (const n of nics) setNic(v, n);
  return v;
}

function setNic(v: View, n: NicRow): void {
  const was = v.nics.get(n.uuid);
  if (was) dropHeld(v, was.vmUuid);
  v.nics.set(n.uuid, n);
  v.held.set(n.vmUuid, (v.held.get(n.vmUuid) ?? 0) + 1);
}

function deleteNic(v: View, uuid: string): boolean {
  const was = v.nics.get(uuid);
  if (!was) return false;
  v.nics.delete(uuid);
  dropHeld(v, was.vmUuid);
  return true;
}

function dropHeld(v: View, vmUuid: string): void {
  const n = (v.held.get(vmUuid) ?? 0) - 1;
  if (n > 0) v.held.set(vmUuid, n);
  else v.held.delete(vmUuid);
}

/** `joined` with the NICs of the `patch` VMs rebuilt from their rows: no new join, no sort (a rename of every VM of a 250-VM L3 allocated ~124 KB per apply). */
function patched(v: View & { joined: readonly LiveNic[] }): readonly LiveNic[] {
  const p = v.patch;
  delete v.patch;
  if (!p) return v.joined;
  return v.joined.map((x) => (p.has(x.vmUuid) ? liveNic(x.nicUuid, x.ip, x.mac, v.vms.get(x.vmUuid) as VmRow & { host: string }) : x));
}

/** Kinds whose records FlatNicCache keeps whole (network(), ranges()): they change rarely, and every apply read them (~3 of its store reads). */
const NETWORK_KINDS = new Set(['l3-network', 'l2-network', 'ip-range']);

export class FlatNicCache implements NicSource {
  private views = new Map<string, View>();
  /**
   * L3s being loaded, with the VM and NIC events that came meanwhile (undefined once refresh()
   * ran or too many came: the load is then used once, not kept). A load read either side of
   * each of those changes; replaying them in order on what it read gives the state after the
   * last (issue 19: on a shared inventory other controllers' changes arrive all the time, and a
   * load that any event overlapped was dropped, so every apply read the whole L3 again).
   */
  private loading = new Map<string, { events: ResourceEvent[] | undefined; done: Promise<readonly LiveNic[]> }>();
  /** L3 and L2 networks by uuid, ip-ranges by L3: as read, until an event of their kind. */
  private networks = new Map<string, Resource>();
  private rangesOf = new Map<string, readonly Resource[]>();
  /** Bumped by every event of NETWORK_KINDS and by refresh(): a read that saw it change is used once but not kept. */
  private networkGen = 0;

  constructor(private readonly store: InventoryStore) {}

  /** Follow the inventory. Subscribe before anything that applies on the same events. */
  watch(bus: EventBus): () => void {
    return bus.subscribe((e) => {
      if (e.type === 'resource.created' || e.type === 'resource.updated' || e.type === 'resource.deleted') this.onEvent(e);
    });
  }

  refresh(): void {
    this.views.clear();
    for (const l of this.loading.values()) l.events = undefined;
    this.networks.clear();
    this.rangesOf.clear();
    this.networkGen++;
  }

  async network(uuid: string): Promise<Resource | undefined> {
    const hit = this.networks.get(uuid);
    if (hit) return hit;
    const gen = this.networkGen;
    const r = await this.store.get(uuid);
    // a missing one is not kept (its create comes as an event, but the next read is cheap enough)
    if (r && NETWORK_KINDS.has(r.kind) && gen === this.networkGen) this.networks.set(uuid, r);
    return r;
  }

  async ranges(l3Uuid: string): Promise<readonly Resource[]> {
    const hit = this.rangesOf.get(l3Uuid);
    if (hit) return hit;
    const gen = this.networkGen;
    const rs = await this.store.byParent('ip-range', l3Uuid);
    if (gen === this.networkGen) this.rangesOf.set(l3Uuid, rs);
    return rs;
  }

  /** L3s held in memory (tests). */
  get size(): number {
    return this.views.size;
  }

  async liveNics(l3Uuid: string): Promise<readonly LiveNic[]> {
    for (;;) {
      const v = this.views.get(l3Uuid);
      if (!v) break;
      if (v.filling) await v.filling.done;
      else if (v.missing?.size) await this.fill(l3Uuid, v);
      else {
        if (!v.joined) {
          delete v.patch;
          v.joined = join(v.nics.values(), v.vms);
        } else if (v.patch) v.joined = patched(v as View & { joined: readonly LiveNic[] });
        return v.joined;
      }
      // refresh() may have dropped the view meanwhile: look again
    }
    const pending = this.loading.get(l3Uuid);
    if (pending) return pending.done;
    return this.load(l3Uuid);
  }

  /** The L3 read from the inventory, the events that came meanwhile replayed on it, kept. */
  private load(l3Uuid: string): Promise<readonly LiveNic[]> {
    const entry: { events: ResourceEvent[] | undefined; done: Promise<readonly LiveNic[]> } = { events: [], done: Promise.resolve([]) };
    entry.done = (async () => {
      try {
        const { nics, vms } = await loadRows(this.store, l3Uuid);
        const view = newView(nics, vms);
        const events = entry.events;
        if (!events) return join(nics, vms); // used once, as read
        for (const e of events) this.applyTo(l3Uuid, view, e);
        this.views.set(l3Uuid, view);
        // missing VMs (a NIC replayed before its VM's event) are read by the caller's next look
        return view.missing?.size ? this.liveNics(l3Uuid) : (view.joined = join(view.nics.values(), view.vms));
      } finally {
        if (this.loading.get(l3Uuid) === entry) this.loading.delete(l3Uuid);
      }
    })();
    this.loading.set(l3Uuid, entry);
    return entry.done;
  }

  /** Read the view's missing VMs (one list by uuid); an event about one of them meanwhile wins over the read. */
  private async fill(l3Uuid: string, v: View): Promise<void> {
    const want = v.missing!;
    delete v.missing;
    const touched = new Set<string>();
    let done!: () => void;
    v.filling = { done: new Promise<void>((r) => (done = r)), want, touched };
    try {
      const ids = [...want];
      const read: Resource[] = [];
      for (let i = 0; i < ids.length; i += 4000) read.push(...(await this.store.list({ kind: 'vm-instance', filters: [{ field: 'uuid', op: '?=', value: ids.slice(i, i + 4000) }] })).items);
      if (this.views.get(l3Uuid) !== v) return;
      for (const vm of read) {
        if (touched.has(vm.uuid)) continue;
        v.vms.set(vm.uuid, vmRow(vm));
        delete v.joined;
        delete v.patch;
      }
      // one not found is gone: its NICs are served nowhere (their delete events follow)
    } catch (e) {
      // not read: asked for again by the next look
      for (const u of want) if (!touched.has(u)) (v.missing ??= new Set()).add(u);
      throw e;
    } finally {
      delete v.filling;
      done();
    }
  }

  private onEvent(e: ResourceEvent): void {
    if (NETWORK_KINDS.has(e.kind)) {
      // rare: everything of these kinds is read again (an ip-range's L3 is its parent, an update may move nothing else)
      this.networks.clear();
      this.rangesOf.clear();
      this.networkGen++;
      return;
    }
    if (e.kind !== 'vm-instance' && e.kind !== 'vm-nic') return;
    // a load in flight may have read either side of this change: it replays it
    for (const l of this.loading.values()) {
      if (!l.events) continue;
      if (l.events.length >= MAX_BUFFERED) l.events = undefined;
      else l.events.push(e);
    }
    for (const [l3, v] of this.views) this.applyTo(l3, v, e);
  }

  /** One VM or NIC event on one L3's view. */
  private applyTo(l3: string, v: View, e: ResourceEvent): void {
    const r = e.resource;
    if (e.kind === 'vm-instance') {
      const row = e.type === 'resource.deleted' ? undefined : vmRow(r);
      const was = v.vms.get(r.uuid);
      if (v.filling?.want.has(r.uuid)) v.filling.touched.add(r.uuid);
      // a VM the view has, one with NICs here, or one that names the L3 (its NICs may follow)
      if (!was && !v.held.has(r.uuid) && (e.type === 'resource.deleted' || !((r.l3NetworkUuids as string[] | undefined) ?? []).includes(l3))) return;
      if (v.missing?.delete(r.uuid) && v.missing.size === 0) delete v.missing;
      if (row && was && sameVmRow(was, row)) return; // nothing the NICs show changed (a state or date)
      if (row) v.vms.set(r.uuid, row);
      else v.vms.delete(r.uuid);
      // same place in the order and still served: only its NICs' fields change
      if (row && was && v.joined && was.createDate === row.createDate && (was.host === undefined) === (row.host === undefined)) (v.patch ??= new Set()).add(r.uuid);
      else {
        delete v.joined;
        delete v.patch;
      }
      return;
    }
    // a NIC: out of the view if it is on another L3 now (it may have moved), else in it
    const nicL3 = e.type === 'resource.deleted' ? undefined : String(r.l3NetworkUuid);
    if (nicL3 !== l3) {
      if (deleteNic(v, r.uuid)) delete v.joined;
      return;
    }
    const row = nicRow(r);
    // its VM not seen here: read by the next look (just that VM)
    if (!v.vms.has(row.vmUuid) && !v.filling?.want.has(row.vmUuid)) (v.missing ??= new Set()).add(row.vmUuid);
    setNic(v, row);
    delete v.joined;
  }
}
