// Flat-network services of one host: per-L3 service namespaces with dnsmasq (static DHCP for
// this host's VMs, DNS for the L3) and the metadata service. Requests are validated in full
// before anything is touched; state is written to the data dir, then rendered and applied.
import { join } from 'node:path';
import { TStackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { flatNames, type FlatNames, type NameScheme } from './names.js';
import { checkBridge, ensureNamespace, deleteNamespace, netnsExists } from './netns.js';
import { findDnsmasq, reloadDnsmasq, startDnsmasq, stopDnsmasq } from './dnsmasq.js';
import { MetadataServer } from './metadata/server.js';
import { dnsmasqPaths, renderDhcpHosts, renderDhcpOpts, renderDnsmasqConf, renderHosts, renderServers, type DnsmasqPaths } from './render/dnsmasq.js';
import { ensureDir, flatRoot, listDirs, readJson, removeDir, writeIfChanged, writeJson } from './state.js';
import {
  validateDhcpEntries,
  validateDnsRecords,
  validateMetadataRecords,
  validateNetwork,
  type DhcpEntrySpec,
  type DnsRecordSpec,
  type FlatNetworkSpec,
  type MetadataRecordSpec,
} from './validate.js';

export interface FlatOptions {
  dataDir: string;
  scheme: NameScheme;
  log: Logger;
  /** Port of the metadata service in the namespaces (80; tests may change it). */
  metadataPort?: number;
}

interface L3 {
  network: FlatNetworkSpec;
  names: FlatNames;
  dir: string;
  paths: DnsmasqPaths;
  dhcp: DhcpEntrySpec[];
  dns: { records: DnsRecordSpec[]; forwarders: string[] };
  metadata: Map<string, MetadataRecordSpec>;
  md?: MetadataServer;
}

const key = (uuid: string): string => uuid.replace(/-/g, '').toLowerCase();

/** Re-label a validation error of a merged list onto the single field of an add request. */
function relabel<T>(fn: () => T, from: string, to: string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TStackError && e.code === 'INVALID_ARGUMENT' && typeof e.details?.field === 'string' && e.details.field.startsWith(from)) {
      const field = to + (e.details.field as string).slice(from.length);
      throw new TStackError('INVALID_ARGUMENT', `${field}: ${e.details.reason as string}`, { ...e.details, field });
    }
    throw e;
  }
}

export class FlatService {
  private nets = new Map<string, L3>();

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
        const network = readJson<FlatNetworkSpec | undefined>(join(dir, 'network.json'), undefined);
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
    const st: L3 = {
      network,
      names: flatNames(network.l3NetworkUuid, this.o.scheme),
      dir,
      paths: dnsmasqPaths(dir),
      dhcp: readJson<DhcpEntrySpec[]>(join(dir, 'dhcp.json'), []),
      dns: readJson(join(dir, 'dns.json'), { records: [], forwarders: [] }),
      metadata: new Map(readJson<MetadataRecordSpec[]>(join(dir, 'metadata.json'), []).map((r) => [r.ip, r])),
    };
    return st;
  }

  /** Namespace, files, dnsmasq and the metadata service made to match `st`. */
  private async converge(st: L3, signal: AbortSignal | undefined): Promise<boolean> {
    const nsChanged = await ensureNamespace(st.network, st.names, signal);
    const confChanged = writeIfChanged(st.paths.conf, renderDnsmasqConf(st.network, st.names.nsVeth, st.paths));
    const filesChanged = this.renderFiles(st);
    let pid = findDnsmasq(st.paths);
    let changed = nsChanged || confChanged;
    if (pid !== undefined && (nsChanged || confChanged)) {
      await stopDnsmasq(st.paths);
      pid = undefined;
    }
    if (pid === undefined) {
      await startDnsmasq(st.names.namespace, st.paths, signal);
      changed = true;
    } else if (filesChanged) {
      reloadDnsmasq(st.paths);
      changed = true;
    }
    await this.ensureMetadata(st, nsChanged);
    return changed || filesChanged;
  }

  private renderFiles(st: L3): boolean {
    const w = [
      writeIfChanged(st.paths.dhcpHosts, renderDhcpHosts(st.network, st.dhcp)),
      writeIfChanged(st.paths.dhcpOpts, renderDhcpOpts(st.network)),
      writeIfChanged(st.paths.hosts, renderHosts(st.network, st.dns.records, st.dhcp)),
      writeIfChanged(st.paths.servers, renderServers(st.dns.forwarders)),
    ];
    return w.some(Boolean);
  }

  /** Write the rendered files and SIGHUP dnsmasq when one changed (start it if it died). */
  private async reload(st: L3): Promise<boolean> {
    const changed = this.renderFiles(st);
    if (findDnsmasq(st.paths) === undefined) {
      await startDnsmasq(st.names.namespace, st.paths);
      return true;
    }
    if (changed) reloadDnsmasq(st.paths);
    return changed;
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

  info(st: L3): { l3NetworkUuid: string; namespace: string; hostVeth: string; nsVeth: string; dnsmasqPid?: number; metadata: boolean } {
    const pid = findDnsmasq(st.paths);
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
    const wrote = writeJson(join(dir, 'network.json'), network);
    this.nets.set(k, st);
    try {
      const changed = await this.converge(st, signal);
      return { namespace: this.info(st), changed: changed || wrote };
    } catch (e) {
      // a namespace that never worked leaves nothing behind
      if (!existing) await this.delete(network.l3NetworkUuid).catch(() => undefined);
      throw e;
    }
  }

  async delete(uuid: string): Promise<boolean> {
    const k = key(uuid);
    const st = this.nets.get(k);
    const names = flatNames(uuid, this.o.scheme);
    const dir = this.dirOf(uuid);
    const paths = dnsmasqPaths(dir);
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
    st.dhcp = entries.map((e) => ({ ...e, mac: e.mac.toLowerCase() }));
    writeJson(join(st.dir, 'dhcp.json'), st.dhcp);
    const reloaded = await this.reload(st);
    return { entries: st.dhcp.length, reloaded };
  }

  async dhcpAdd(uuid: string, entry: DhcpEntrySpec): Promise<{ entries: number; reloaded: boolean }> {
    const st = this.get(uuid);
    const mac = entry.mac.toLowerCase();
    const merged = [...st.dhcp.filter((e) => e.mac !== mac), { ...entry, mac }];
    relabel(() => validateDhcpEntries(st.network, merged, 'entries'), `entries.${merged.length - 1}`, 'entry');
    st.dhcp = merged;
    writeJson(join(st.dir, 'dhcp.json'), st.dhcp);
    const reloaded = await this.reload(st);
    return { entries: st.dhcp.length, reloaded };
  }

  async dhcpRemove(uuid: string, mac: string): Promise<{ entries: number; reloaded: boolean }> {
    const st = this.get(uuid);
    st.dhcp = st.dhcp.filter((e) => e.mac !== mac.toLowerCase());
    writeJson(join(st.dir, 'dhcp.json'), st.dhcp);
    const reloaded = await this.reload(st);
    return { entries: st.dhcp.length, reloaded };
  }

  async dnsApply(uuid: string, records: DnsRecordSpec[], forwarders: string[]): Promise<{ records: number; forwarders: number }> {
    const st = this.get(uuid);
    validateDnsRecords(records);
    st.dns = { records, forwarders };
    writeJson(join(st.dir, 'dns.json'), st.dns);
    await this.reload(st);
    return { records: records.length, forwarders: forwarders.length };
  }

  async dnsAdd(uuid: string, record: DnsRecordSpec): Promise<{ records: number; forwarders: number }> {
    const st = this.get(uuid);
    const records = [...st.dns.records.filter((r) => r.name.toLowerCase() !== record.name.toLowerCase()), record];
    return this.dnsApply(uuid, records, st.dns.forwarders);
  }

  async dnsRemove(uuid: string, name: string): Promise<{ records: number; forwarders: number }> {
    const st = this.get(uuid);
    return this.dnsApply(uuid, st.dns.records.filter((r) => r.name.toLowerCase() !== name.toLowerCase()), st.dns.forwarders);
  }

  private saveMetadata(st: L3): { records: number } {
    writeJson(join(st.dir, 'metadata.json'), [...st.metadata.values()]);
    return { records: st.metadata.size };
  }

  async metadataApply(uuid: string, records: MetadataRecordSpec[]): Promise<{ records: number }> {
    const st = this.get(uuid);
    validateMetadataRecords(st.network, records);
    st.metadata = new Map(records.map((r) => [r.ip, r]));
    return this.saveMetadata(st);
  }

  async metadataAdd(uuid: string, record: MetadataRecordSpec): Promise<{ records: number }> {
    const st = this.get(uuid);
    const merged = [...[...st.metadata.values()].filter((r) => r.ip !== record.ip && r.instanceId !== record.instanceId), record];
    relabel(() => validateMetadataRecords(st.network, merged, 'records'), `records.${merged.length - 1}`, 'record');
    st.metadata = new Map(merged.map((r) => [r.ip, r]));
    return this.saveMetadata(st);
  }

  async metadataRemove(uuid: string, ip: string): Promise<{ records: number }> {
    const st = this.get(uuid);
    st.metadata.delete(ip);
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

  /** Watchdog step: restart a dnsmasq that died and reopen a metadata socket that closed. */
  async heal(uuid: string): Promise<void> {
    const st = this.nets.get(key(uuid));
    if (!st || !netnsExists(st.names.namespace)) return;
    if (findDnsmasq(st.paths) === undefined) {
      this.o.log.warn({ l3: uuid, namespace: st.names.namespace }, 'dnsmasq is not running: restarting it');
      await startDnsmasq(st.names.namespace, st.paths);
    }
    if (st.network.metadata !== false && !st.md?.listening) await this.ensureMetadata(st, true);
  }

  /** Agent shutdown: close the metadata sockets; dnsmasq keeps serving DHCP. */
  async close(): Promise<void> {
    for (const st of this.nets.values()) await st.md?.stop();
  }
}
