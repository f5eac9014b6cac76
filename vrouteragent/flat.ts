// Flat-network services of one host: per-L3 service namespaces with dnsmasq (static DHCP for
// this host's VMs, DNS for the L3) and the metadata service. Requests are validated in full
// before anything is touched; state is written to the data dir, then rendered and applied.
// flat/apply carries the complete desired state of one L3; converge() makes the host match it
// (namespace, files, dnsmasq, leases, metadata) and is also what recovery and the watchdog run.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TStackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { flatNames, type FlatNames, type NameScheme } from './names.js';
import { checkBridge, ensureNamespace, deleteNamespace, linkExists, netnsExists } from './netns.js';
import { findDnsmasq, reloadDnsmasq, startDnsmasq, startTimeOf, stopDnsmasq } from './dnsmasq.js';
import { MetadataServer } from './metadata/server.js';
import { dnsmasqPaths, renderDhcpHosts, renderDhcpOpts, renderDnsmasqConf, renderHosts, renderServers, type DnsmasqPaths } from './render/dnsmasq.js';
import { expandFlat, partsOfSaved, wholeFlat, type SavedFlat } from './render/flat-desired.js';
import { DnsSet } from '../shared/dns-set.js';
import { filterLeases } from './render/leases.js';
import { ensureDir, FileMemory, flatRoot, listDirs, readJson, readReplacedJson, removeDir, writeIfChanged, writeLinked, writeUnflushed } from './state.js';
import {
  validateDhcpEntries,
  validateDnsRecords,
  validateFlatApply,
  validateMetadataRecords,
  validateNetwork,
  type DhcpEntrySpec,
  type DnsRecordSpec,
  type FlatApplyRequest,
  type FlatNetworkSpec,
  type MetadataRecordSpec,
} from './validate.js';

export interface FlatOptions {
  dataDir: string;
  scheme: NameScheme;
  log: Logger;
  /** Port of the metadata service in the namespaces (80; tests may change it). */
  metadataPort?: number;
  /** How long after answering a flat/apply its desired state is saved (default SAVE_DELAY_MS). */
  saveDelayMs?: number;
}

/**
 * A flat/apply is answered once dnsmasq has its files; desired.json is written this much later,
 * off the answer path (one state per L3 however many applies came meanwhile). It only serves a
 * restarting agent, and an agent killed before writing it is sent the state again: the
 * controller re-applies every key of a host whose agent restarted (and every periodic pass).
 */
export const SAVE_DELAY_MS = 20;

interface L3 {
  network: FlatNetworkSpec;
  names: FlatNames;
  dir: string;
  paths: DnsmasqPaths;
  dhcp: DhcpEntrySpec[];
  dns: { records: DnsRecordSpec[]; forwarders: string[] };
  /** The other hosts' DNS records as flat/apply last sent them (the base of the next delta); none after a per-part command. */
  set?: DnsSet;
  metadata: Map<string, MetadataRecordSpec>;
  md?: MetadataServer;
  /** The network spec the namespace was last fully checked against (skip the ip/sysctl calls while it holds). */
  ensured?: string;
  /** Loaded from the per-part files of an older agent. */
  legacy?: boolean;
  /** What was last written to this L3's files (desired.json and dnsmasq's). */
  files: FileMemory;
  /** The text of the flat/apply this state came from (undefined after a per-part command or a restart). */
  applied?: string;
  /** The last flat/apply sent its DNS records as a delta (the next whole one is a drift check). */
  viaDelta?: boolean;
  /** desired.json's next content, written by flushSaves() (a function: made then, once). */
  pendingSave?: string | (() => string);
  /** The dnsmasq found and checked by the last converge, and the DHCP entries its lease file was checked against (CheckedDnsmasq). */
  checked?: CheckedDnsmasq;
}

/**
 * What a converge found: dnsmasq's pid and start time (/proc/<pid>/stat) once findDnsmasq()
 * had checked it (pid file, command line, PID namespace), and the entries its leases were
 * filtered for. The next apply of the L3 takes the same process for its own by the start time
 * alone (one read instead of three), and reads the lease file again only when a MAC/IP pair
 * changed: while the pairs stay, dnsmasq (which answers only known MACs) writes no lease that
 * filterLeases would drop. Dropped at every drift check (the periodic pass's `verify`, an
 * identical re-send, the watchdog's heal), which checks everything again.
 */
interface CheckedDnsmasq {
  pid: number;
  start: string;
  dhcp: DhcpEntrySpec[];
}

/** The same MAC/IP pairs in the same order (hostnames aside)? */
function samePairs(a: DhcpEntrySpec[], b: DhcpEntrySpec[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.mac !== b[i]!.mac || a[i]!.ip !== b[i]!.ip) return false;
  return true;
}

/** A drift check follows: every file compared with the disk, dnsmasq and its leases looked up in full. */
function forgetChecks(st: L3): void {
  st.files.forget();
  delete st.checked;
}

/**
 * The saved desired state of an L3: the last flat/apply request as received (FlatApplySpec),
 * or FlatDesired after a per-part command (and from agents of protocol 1).
 */
const DESIRED = 'desired.json';

/** The desired state as parts (the per-part commands and protocol 1's flat/apply). */
export interface FlatDesired {
  network: FlatNetworkSpec;
  dhcp: DhcpEntrySpec[];
  dns: { records: DnsRecordSpec[]; forwarders: string[] };
  metadata: MetadataRecordSpec[];
}

/** A file's text, or undefined when it does not exist (one call, not an existsSync before it). */
function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

const key = (uuid: string): string => uuid.replace(/-/g, '').toLowerCase();

const lowerMacs = (entries: DhcpEntrySpec[]): DhcpEntrySpec[] => entries.map((e) => ({ ...e, mac: e.mac.toLowerCase() }));

export class FlatService {
  private nets = new Map<string, L3>();
  private saveTimer?: NodeJS.Timeout;

  constructor(private readonly o: FlatOptions) {}

  private dirOf(uuid: string): string {
    return join(flatRoot(this.o.dataDir), key(uuid));
  }

  private get(uuid: string): L3 {
    const st = this.nets.get(key(uuid));
    if (!st) {
      throw new TStackError('NOT_FOUND', `flat L3 ${uuid} has no service namespace on this host: call flat/namespace/ensure first`, { field: 'l3NetworkUuid' });
    }
    return st;
  }

  /** On agent start: re-read every L3 directory, re-check its namespace, adopt or start dnsmasq, reopen the metadata socket. */
  async recover(): Promise<void> {
    for (const d of listDirs(flatRoot(this.o.dataDir))) {
      const dir = join(flatRoot(this.o.dataDir), d);
      try {
        const network = readReplacedJson<Partial<FlatDesired>>(join(dir, DESIRED), {}).network ?? readJson<FlatNetworkSpec | undefined>(join(dir, 'network.json'), undefined);
        if (!network) continue;
        const st = this.load(network, dir);
        this.nets.set(key(network.l3NetworkUuid), st);
        const pidBefore = findDnsmasq(st.paths);
        await this.converge(st, undefined);
        this.o.log.info({ l3: network.l3NetworkUuid, namespace: st.names.namespace, dnsmasq: pidBefore ? `adopted ${pidBefore}` : 'started' }, 'flat L3 recovered');
      } catch (e) {
        this.o.log.error({ dir, err: (e as Error).message }, 'cannot recover flat L3 (kept on disk; the next ensure retries)');
      }
    }
  }

  private load(network: FlatNetworkSpec, dir: string): L3 {
    const base = { network, names: flatNames(network.l3NetworkUuid, this.o.scheme), dir, paths: dnsmasqPaths(dir), files: new FileMemory() };
    const saved = readReplacedJson<SavedFlat | undefined>(join(dir, DESIRED), undefined);
    if (saved) {
      const parts = partsOfSaved(saved);
      // a saved flat/apply holds the other hosts' records whole: the base of the next delta
      const set = 'nics' in saved ? DnsSet.of(saved.dns.records) : undefined;
      return { ...base, dhcp: parts.dhcp, dns: parts.dns, ...(set ? { set } : {}), metadata: new Map(parts.metadata.map((r) => [r.ip, r])) };
    }
    // state written by an older agent: one file per part (removed once desired.json is written)
    return {
      ...base,
      dhcp: readJson<DhcpEntrySpec[]>(join(dir, 'dhcp.json'), []),
      dns: readJson(join(dir, 'dns.json'), { records: [], forwarders: [] }),
      metadata: new Map(readJson<MetadataRecordSpec[]>(join(dir, 'metadata.json'), []).map((r) => [r.ip, r])),
      legacy: true,
    };
  }

  /**
   * Save the L3's desired state (one file: each write-and-rename costs a flush on ext4, and
   * an apply changes several parts at once). True when it changed. The same state again (the
   * controller's periodic pass) is a drift check: every file is compared with the disk.
   * Written at once (namespace/ensure and the per-part commands; flat/apply saves later: saveSoon).
   */
  private save(st: L3): boolean {
    const text = JSON.stringify({ network: st.network, dhcp: st.dhcp, dns: st.dns, metadata: [...st.metadata.values()] } satisfies FlatDesired) + '\n';
    delete st.applied;
    let wrote = this.writeDesired(st, text);
    if (!wrote) {
      forgetChecks(st);
      wrote = this.writeDesired(st, text);
    }
    return wrote;
  }

  private writeDesired(st: L3, text: string): boolean {
    delete st.pendingSave;
    // the agent's own file: replaced without ext4's flush (dnsmasq's files are renamed over)
    const wrote = st.files.write(join(st.dir, DESIRED), text, 0o600, writeUnflushed);
    if (st.legacy) {
      for (const f of ['network.json', 'dhcp.json', 'dns.json', 'metadata.json']) rmSync(join(st.dir, f), { force: true });
      delete st.legacy;
    }
    return wrote;
  }

  /** desired.json of `st` written SAVE_DELAY_MS from now, after the answer (the latest state, once). */
  private saveSoon(st: L3, text: string | (() => string)): void {
    st.pendingSave = text;
    this.saveTimer ??= setTimeout(() => this.flushSaves(), this.o.saveDelayMs ?? SAVE_DELAY_MS);
  }

  /** Write every pending desired.json (also on shutdown). */
  flushSaves(): void {
    clearTimeout(this.saveTimer);
    delete this.saveTimer;
    for (const st of this.nets.values()) {
      const p = st.pendingSave;
      if (p === undefined) continue;
      try {
        this.writeDesired(st, typeof p === 'string' ? p : p());
      } catch (e) {
        // nothing lost while the agent runs (it serves from memory); the next apply saves again
        st.files.drop(join(st.dir, DESIRED));
        this.o.log.error({ l3: st.network.l3NetworkUuid, err: (e as Error).message }, 'cannot save the desired state of a flat L3');
      }
    }
  }

  /**
   * Namespace, files, dnsmasq, leases and the metadata service made to match `st`. Repairs what
   * went missing: a deleted namespace or veth, a dead dnsmasq, a deleted lease file. dnsmasq is
   * restarted (not just SIGHUPed) when its config changed, its namespace was recreated, its lease
   * file is gone, or a lease is held by a MAC/IP pair that is no longer desired.
   */
  private async converge(st: L3, signal: AbortSignal | undefined): Promise<{ changed: boolean; releasedLeases: number; pid: number | undefined }> {
    const spec = JSON.stringify(st.network);
    const intact = st.ensured === spec && netnsExists(st.names.namespace) && linkExists(st.names.hostVeth);
    let nsChanged = false;
    if (!intact) {
      delete st.ensured;
      nsChanged = await ensureNamespace(st.network, st.names, signal);
      st.ensured = spec;
    }
    const confChanged = st.files.write(st.paths.conf, renderDnsmasqConf(st.network, st.names.nsVeth, st.paths));
    const filesChanged = this.renderFiles(st);
    const known = st.checked;
    delete st.checked;
    const same = known !== undefined && startTimeOf(known.pid) === known.start;
    let pid = same ? known.pid : findDnsmasq(st.paths);
    // the same process with the same pairs: its lease file holds nothing to drop (see CheckedDnsmasq)
    const leasesKnown = same && samePairs(known.dhcp, st.dhcp);
    const leaseText = leasesKnown ? '' : readIfExists(st.paths.leases);
    const stale = leaseText === undefined || leasesKnown ? [] : filterLeases(leaseText, st.dhcp).released;
    let releasedLeases = 0;
    let changed = nsChanged || confChanged;
    if (pid !== undefined && (nsChanged || confChanged || stale.length > 0 || leaseText === undefined)) {
      if (leaseText === undefined) this.o.log.warn({ l3: st.network.l3NetworkUuid }, 'the lease file is gone: restarting dnsmasq');
      await stopDnsmasq(st.paths);
      pid = undefined;
    }
    const kept = pid !== undefined;
    if (pid === undefined) {
      // dnsmasq reads its leases only at start: drop the stale ones now (re-read: it may have written on exit)
      if (existsSync(st.paths.leases)) {
        const f = filterLeases(readFileSync(st.paths.leases, 'utf8'), st.dhcp);
        if (f.released.length > 0) {
          writeIfChanged(st.paths.leases, f.kept);
          releasedLeases = f.released.length;
          this.o.log.info({ l3: st.network.l3NetworkUuid, released: f.released }, 'dropped leases of MACs no longer served');
        }
      }
      await startDnsmasq(st.names.namespace, st.paths, signal);
      changed = true;
    } else if (filesChanged) {
      reloadDnsmasq(st.paths, pid);
      changed = true;
    }
    await this.ensureMetadata(st, nsChanged);
    pid ??= findDnsmasq(st.paths);
    const start = pid === undefined ? undefined : same && kept && pid === known.pid ? known.start : startTimeOf(pid);
    if (pid !== undefined && start !== undefined) st.checked = { pid, start, dhcp: st.dhcp };
    return { changed: changed || filesChanged, releasedLeases, pid };
  }

  /** The files dnsmasq re-reads on SIGHUP, each swapped in through a symlink (writeLinked). */
  private renderFiles(st: L3): boolean {
    const w = [
      st.files.write(st.paths.dhcpHosts, renderDhcpHosts(st.network, st.dhcp), 0o644, writeLinked),
      st.files.write(st.paths.dhcpOpts, renderDhcpOpts(st.network), 0o644, writeLinked),
      st.files.write(st.paths.hosts, renderHosts(st.network, st.dns.records, st.dhcp), 0o644, writeLinked),
      st.files.write(st.paths.servers, renderServers(st.dns.forwarders), 0o644, writeLinked),
    ];
    return w.some(Boolean);
  }

  /** Write the rendered files and SIGHUP dnsmasq when one changed (repairing whatever went missing). */
  private async reload(st: L3): Promise<boolean> {
    return (await this.converge(st, undefined)).changed;
  }

  private async ensureMetadata(st: L3, restart: boolean): Promise<void> {
    if (st.network.metadata === false) {
      await st.md?.stop();
      st.md = undefined;
      return;
    }
    if (st.md && restart) {
      await st.md.stop();
      st.md = undefined;
    }
    if (!st.md) st.md = new MetadataServer(st.names.namespace, (ip) => st.metadata.get(ip), this.o.log, this.o.metadataPort ?? 80);
    await st.md.start();
  }

  /** `pid`: dnsmasq's pid when the caller just found it. */
  info(st: L3, pid = findDnsmasq(st.paths)): { l3NetworkUuid: string; namespace: string; hostVeth: string; nsVeth: string; dnsmasqPid?: number; metadata: boolean } {
    return {
      l3NetworkUuid: st.network.l3NetworkUuid,
      namespace: st.names.namespace,
      hostVeth: st.names.hostVeth,
      nsVeth: st.names.nsVeth,
      ...(pid !== undefined ? { dnsmasqPid: pid } : {}),
      metadata: st.md?.listening === true,
    };
  }

  async ensure(network: FlatNetworkSpec, signal?: AbortSignal): Promise<{ namespace: ReturnType<FlatService['info']>; changed: boolean }> {
    validateNetwork(network);
    const k = key(network.l3NetworkUuid);
    const existing = this.nets.get(k);
    // entries applied earlier must still fit the (possibly changed) network
    if (existing) {
      validateDhcpEntries(network, existing.dhcp, 'existing DHCP entries');
      validateMetadataRecords(network, [...existing.metadata.values()], 'existing metadata records');
    }
    checkBridge(network.bridge);
    const dir = this.dirOf(network.l3NetworkUuid);
    ensureDir(dir);
    const st = existing ?? this.load(network, dir);
    st.network = network;
    const wrote = this.save(st);
    this.nets.set(k, st);
    try {
      const { changed, pid } = await this.converge(st, signal);
      return { namespace: this.info(st, pid), changed: changed || wrote };
    } catch (e) {
      // a namespace that never worked leaves nothing behind
      if (!existing) {
        await this.delete(network.l3NetworkUuid).catch((x: unknown) => this.o.log.warn({ l3: network.l3NetworkUuid, err: (x as Error).message }, 'cleanup after a failed ensure failed'));
      }
      throw e;
    }
  }

  /**
   * flat/apply: the complete desired state of one L3 on this host, validated whole before
   * anything changes, converged, then saved after the answer (saveSoon). Idempotent; a second
   * identical call changes nothing but repairs drift. `body`: the request's JSON text as received
   * (saved as is: no second serialization). DNS records sent as a delta are applied to the ones
   * held first (wholeFlat); the state saved is then the whole request. `verify` (the periodic
   * pass): everything is checked against the host as for an identical state.
   */
  async apply(req: FlatApplyRequest, signal?: AbortSignal, body?: string): Promise<{ namespace: ReturnType<FlatService['info']>; changed: boolean; releasedLeases: number; dnsDigest?: string }> {
    const network = req.network;
    const k = key(network.l3NetworkUuid);
    const existing = this.nets.get(k);
    const whole = wholeFlat(req, existing?.set);
    const want = whole.want;
    validateFlatApply(want);
    checkBridge(network.bridge);
    let st = existing;
    if (!st) {
      const dir = this.dirOf(network.l3NetworkUuid);
      ensureDir(dir);
      st = this.load(network, dir);
    }
    const parts = expandFlat(want);
    st.network = network;
    st.dhcp = parts.dhcp;
    st.dns = parts.dns;
    st.metadata = new Map(parts.metadata.map((r) => [r.ip, r]));
    st.set = whole.set ?? DnsSet.of(want.dns.records);
    const delta = whole.set !== undefined;
    const text = delta ? undefined : (body ?? JSON.stringify(want));
    // the same state again is a drift check: every file is compared with the disk; so is the
    // first whole state after deltas (a pass of a controller that sends no `verify`)
    const again = text !== undefined && (st.applied === text || st.viaDelta === true);
    // the periodic pass says so (its DNS records usually come as an empty delta): the files
    // compared with the disk and the namespace checked in full (addresses, veth, routes), not
    // only its existence; dnsmasq and its lease file are looked up in full (forgetChecks)
    if (again || req.verify === true) forgetChecks(st);
    if (req.verify === true) delete st.ensured;
    if (text === undefined) delete st.applied;
    else st.applied = text;
    st.viaDelta = delta;
    this.nets.set(k, st);
    try {
      const r = await this.converge(st, signal);
      return { namespace: this.info(st, r.pid), changed: r.changed || !again, releasedLeases: r.releasedLeases, dnsDigest: st.set.digest };
    } finally {
      this.saveSoon(st, text ?? (() => JSON.stringify(want)));
    }
  }

  async delete(uuid: string): Promise<boolean> {
    const k = key(uuid);
    const st = this.nets.get(k);
    const names = flatNames(uuid, this.o.scheme);
    const dir = this.dirOf(uuid);
    const paths = dnsmasqPaths(dir);
    if (st) delete st.pendingSave;
    await st?.md?.stop();
    const stopped = await stopDnsmasq(paths);
    const deleted = await deleteNamespace(names);
    removeDir(dir);
    this.nets.delete(k);
    return Boolean(st) || stopped || deleted;
  }

  async dhcpApply(uuid: string, entries: DhcpEntrySpec[]): Promise<{ entries: number; reloaded: boolean }> {
    const st = this.get(uuid);
    validateDhcpEntries(st.network, entries);
    st.dhcp = lowerMacs(entries);
    this.save(st);
    const reloaded = await this.reload(st);
    return { entries: st.dhcp.length, reloaded };
  }

  async dnsApply(uuid: string, records: DnsRecordSpec[], forwarders: string[]): Promise<{ records: number; forwarders: number }> {
    const st = this.get(uuid);
    validateDnsRecords(records);
    st.dns = { records, forwarders };
    delete st.set;
    this.save(st);
    await this.reload(st);
    return { records: records.length, forwarders: forwarders.length };
  }

  private saveMetadata(st: L3): { records: number } {
    this.save(st);
    return { records: st.metadata.size };
  }

  async metadataApply(uuid: string, records: MetadataRecordSpec[]): Promise<{ records: number }> {
    const st = this.get(uuid);
    validateMetadataRecords(st.network, records);
    st.metadata = new Map(records.map((r) => [r.ip, r]));
    return this.saveMetadata(st);
  }

  status(uuid?: string): Array<{
    namespace: ReturnType<FlatService['info']>;
    dhcpEntries: number;
    dnsRecords: number;
    metadataRecords: number;
    dnsmasqRunning: boolean;
    metadataListening: boolean;
  }> {
    const list = uuid ? [this.get(uuid)] : [...this.nets.values()];
    return list.map((st) => {
      const info = this.info(st);
      return {
        namespace: info,
        dhcpEntries: st.dhcp.length,
        dnsRecords: st.dns.records.length,
        metadataRecords: st.metadata.size,
        dnsmasqRunning: info.dnsmasqPid !== undefined && netnsExists(st.names.namespace),
        metadataListening: st.md?.listening === true,
      };
    });
  }

  /** The L3s this host serves. */
  list(): string[] {
    return [...this.nets.values()].map((st) => st.network.l3NetworkUuid);
  }

  /** Watchdog step: converge again (a dead dnsmasq, a deleted namespace or lease file, a closed metadata socket). */
  async heal(uuid: string): Promise<void> {
    const st = this.nets.get(key(uuid));
    if (!st) return;
    const pid = findDnsmasq(st.paths);
    if (pid === undefined) this.o.log.warn({ l3: uuid, namespace: st.names.namespace }, 'dnsmasq is not running: restarting it');
    forgetChecks(st);
    await this.converge(st, undefined);
  }

  /** Agent shutdown: the pending saves written, the metadata sockets closed; dnsmasq keeps serving DHCP. */
  async close(): Promise<void> {
    this.flushSaves();
    for (const st of this.nets.values()) await st.md?.stop();
  }
}
