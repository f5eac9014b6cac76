// VPC routers on this host: one network namespace per router (routerNames), a veth pair per
// interface plugged into that network's bridge, IP forwarding on, netfilter rendered by
// render/router.ts and applied in one iptables-restore inside the namespace, and a DNS-only
// dnsmasq on the gateway interfaces when the router has a DNS configuration.
// vrouter/apply saves the desired state (write + rename) before converging, so an agent that
// restarts converges every router from disk; converge() is also what the watchdog runs.
import { join } from 'node:path';
import { TStackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { exec, execOk, execOut } from '../shared/exec.js';
import type { RouterSpecT } from '../shared/protocol/vpc.js';
import { routerNames, type NameScheme, type RouterNames } from './names.js';
import { checkBridge, ensureVeth, linkExists, netnsExists } from './netns.js';
import { planInterfaces, renderRouterNetfilter, type PlannedIf } from './render/router.js';
import { parseVipCounters, type VipCounters } from './render/vip-accounting.js';
import { renderRouterDnsmasqConf, renderRouterHosts } from './render/router-dns.js';
import { dnsmasqPaths, renderServers, type DnsmasqPaths } from './render/dnsmasq.js';
import { findDnsmasq, reloadDnsmasq, startDnsmasq, stopDnsmasq } from './dnsmasq.js';
import { validateRouter } from './router-validate.js';
import { ensureDir, listDirs, readJson, removeDir, writeIfChanged, writeJson } from './state.js';
import { ensureLoadBalancer, loadBalancerBroken, loadBalancerStatus, stopLoadBalancer, validateLoadBalancers } from './lb.js';
import { capIpsecLogs, ensureIpsec, ipsecBroken, ipsecStatus, kernelEsp, reviveIpsec, stopIpsec, validateIpsec } from './ipsec.js';

export interface RouterOptions {
  dataDir: string;
  scheme: NameScheme;
  log: Logger;
}

const hexOf = (uuid: string): string => uuid.replace(/-/g, '').toLowerCase();
export const routerRoot = (dataDir: string): string => join(dataDir, 'vrouter', 'router');

interface Router {
  spec: RouterSpecT;
  names: RouterNames;
  dir: string;
  dns: DnsmasqPaths;
}

export class RouterService {
  private routers = new Map<string, Router>();

  constructor(private readonly o: RouterOptions) {}

  private make(spec: RouterSpecT): Router {
    const dir = join(routerRoot(this.o.dataDir), hexOf(spec.routerUuid));
    return { spec, names: routerNames(spec.routerUuid, this.o.scheme), dir, dns: dnsmasqPaths(dir) };
  }

  /** Agent start: converge every router saved on disk. */
  async recover(): Promise<void> {
    for (const d of listDirs(routerRoot(this.o.dataDir))) {
      const spec = readJson<RouterSpecT | undefined>(join(routerRoot(this.o.dataDir), d, 'router.json'), undefined);
      if (!spec) continue;
      const r = this.make(spec);
      this.routers.set(hexOf(spec.routerUuid), r);
      try {
        await this.converge(r, undefined);
        this.o.log.info({ router: spec.routerUuid, namespace: r.names.namespace }, 'VPC router recovered');
      } catch (e) {
        this.o.log.error({ router: spec.routerUuid, err: (e as Error).message }, 'cannot recover VPC router (kept on disk; the next apply retries)');
      }
    }
  }

  async apply(spec: RouterSpecT, signal?: AbortSignal): Promise<{ router: ReturnType<RouterService['info']>; changed: boolean; natRules: number; durationMs: number }> {
    const t0 = Date.now();
    validateRouter(spec);
    validateLoadBalancers(spec);
    validateIpsec(spec);
    checkBridge(spec.public.bridge);
    spec.networks.forEach((n) => checkBridge(n.bridge));
    const r = this.make(spec);
    ensureDir(r.dir);
    const wrote = writeJson(join(r.dir, 'router.json'), spec);
    this.routers.set(hexOf(spec.routerUuid), r);
    const c = await this.converge(r, signal);
    return { router: this.info(r), changed: wrote || c.changed, natRules: c.natRules, durationMs: Date.now() - t0 };
  }

  private async converge(r: Router, signal: AbortSignal | undefined): Promise<{ changed: boolean; natRules: number }> {
    const ns = r.names.namespace;
    const o = { signal };
    let changed = false;
    const counters = netnsExists(ns) ? await this.vipCounters(ns) : undefined;
    if (!netnsExists(ns)) {
      await exec('ip', ['netns', 'add', ns], o);
      changed = true;
    }
    await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], o);
    await exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ...o, netns: ns });
    const plan = planInterfaces(r.spec, r.names);
    for (const p of plan) if (await ensureVeth(ns, p, signal)) changed = true;
    // interfaces of networks no longer attached
    const links = JSON.parse((await execOut('ip', ['-n', ns, '-j', 'link', 'show'])) || '[]') as Array<{ ifname: string }>;
    const want = new Set(plan.map((p) => p.nsIf));
    for (const l of links) {
      const name = l.ifname.split('@')[0]!;
      // ipsec0: charon's TUN device (kernel-libipsec), not one of the router's interfaces
      if (name === 'lo' || name === 'ipsec0' || want.has(name)) continue;
      await exec('ip', ['-n', ns, 'link', 'del', name], o);
      changed = true;
    }
    if (r.spec.public.gateway) await exec('ip', ['-n', ns, 'route', 'replace', 'default', 'via', r.spec.public.gateway, 'dev', plan[0]!.nsIf], o);
    else await execOk('ip', ['-n', ns, 'route', 'del', 'default']);
    if (await this.ensureRoutes(ns, r.spec.routes ?? [], signal)) changed = true;
    const nfo = { kernelEsp: (r.spec.ipsec ?? []).length > 0 && (await kernelEsp(ns)) };
    const nf = renderRouterNetfilter(r.spec, undefined, nfo);
    writeIfChanged(join(r.dir, 'iptables.rules'), nf.text);
    // the same rules, with the VIP counters read above carried over the replacement
    const withCounters = counters?.size ? renderRouterNetfilter(r.spec, counters, nfo).text : nf.text;
    await exec('iptables-restore', ['-w', '10', '-c'], { ...o, netns: ns, stdin: withCounters, errorCode: 'NETWORK_ERROR' });
    if (await this.ensureDns(r, plan, changed, signal)) changed = true;
    if (await ensureLoadBalancer({ spec: r.spec, namespace: ns, dir: r.dir }, signal)) changed = true;
    if (await ensureIpsec({ spec: r.spec, namespace: ns, dir: r.dir }, signal)) changed = true;
    return { changed, natRules: nf.natRules };
  }

  /** The per-VIP traffic counters of a router namespace (empty when it cannot be read). */
  async vipCounters(ns: string): Promise<Map<string, VipCounters>> {
    const r = await exec('iptables-save', ['-c', '-t', 'mangle'], { netns: ns, timeoutMs: 10_000, quiet: true }).catch(() => undefined);
    return r ? parseVipCounters(r.stdout) : new Map();
  }

  /**
   * The route table's routes, marked `proto static` (only they are: the connected and default
   * routes are the kernel's and `boot`): routes no longer wanted are deleted, the rest replaced.
   */
  private async ensureRoutes(ns: string, want: NonNullable<RouterSpecT['routes']>, signal: AbortSignal | undefined): Promise<boolean> {
    const o = { signal };
    const have = JSON.parse((await execOut('ip', ['-n', ns, '-j', 'route', 'show', 'proto', 'static'])) || '[]') as Array<{ dst: string; type?: string; gateway?: string; metric?: number }>;
    const keyOf = (dst: string, type: string, via: string | undefined, metric: number | undefined): string => `${dst}|${type}|${via ?? ''}|${metric ?? 0}`;
    const wanted = new Set(want.map((w) => keyOf(w.destination, w.type === 'Blackhole' ? 'blackhole' : 'unicast', w.nextHop, w.metric)));
    let changed = false;
    for (const h of have) {
      const dst = h.dst.includes('/') ? h.dst : `${h.dst}/32`;
      if (wanted.has(keyOf(dst, h.type ?? 'unicast', h.gateway, h.metric))) continue;
      await exec('ip', ['-n', ns, 'route', 'del', ...(h.type === 'blackhole' ? ['blackhole'] : []), dst, ...(h.metric ? ['metric', String(h.metric)] : []), 'proto', 'static'], o);
      changed = true;
    }
    const present = new Set(have.map((h) => keyOf(h.dst.includes('/') ? h.dst : `${h.dst}/32`, h.type ?? 'unicast', h.gateway, h.metric)));
    for (const w of want) {
      if (present.has(keyOf(w.destination, w.type === 'Blackhole' ? 'blackhole' : 'unicast', w.nextHop, w.metric))) continue;
      const target = w.type === 'Blackhole' ? ['blackhole', w.destination] : [w.destination, 'via', w.nextHop!];
      await exec('ip', ['-n', ns, 'route', 'replace', ...target, ...(w.metric ? ['metric', String(w.metric)] : []), 'proto', 'static'], o);
      changed = true;
    }
    return changed;
  }

  /** The DNS forwarder: DNS-only dnsmasq on the gateway interfaces (restarted when its config or namespace changed). */
  private async ensureDns(r: Router, plan: PlannedIf[], nsChanged: boolean, signal: AbortSignal | undefined): Promise<boolean> {
    const dns = r.spec.dns;
    const gws = plan.filter((p) => p.key !== 'public').map((p) => p.nsIf);
    if (!dns || gws.length === 0) return stopDnsmasq(r.dns);
    const conf = writeIfChanged(r.dns.conf, renderRouterDnsmasqConf(r.spec.routerUuid, gws, r.dns));
    const files = [writeIfChanged(r.dns.hosts, renderRouterHosts(dns.records)), writeIfChanged(r.dns.servers, renderServers(dns.forwarders))].some(Boolean);
    let pid = findDnsmasq(r.dns);
    if (pid !== undefined && (conf || nsChanged)) {
      await stopDnsmasq(r.dns);
      pid = undefined;
    }
    if (pid === undefined) {
      await startDnsmasq(r.names.namespace, r.dns, signal);
      return true;
    }
    if (files) reloadDnsmasq(r.dns);
    return files;
  }

  info(r: Router): { routerUuid: string; namespace: string; interfaces: Array<{ name: string; hostVeth: string; bridge: string }>; dnsmasqPid?: number } {
    const pid = findDnsmasq(r.dns);
    return {
      routerUuid: r.spec.routerUuid,
      namespace: r.names.namespace,
      interfaces: planInterfaces(r.spec, r.names).map((p) => ({ name: p.nsIf, hostVeth: p.hostVeth, bridge: p.bridge })),
      ...(pid !== undefined ? { dnsmasqPid: pid } : {}),
    };
  }

  async delete(routerUuid: string): Promise<boolean> {
    const k = hexOf(routerUuid);
    const names = routerNames(routerUuid, this.o.scheme);
    const dir = join(routerRoot(this.o.dataDir), k);
    const known = this.routers.get(k);
    let deleted = await stopDnsmasq(dnsmasqPaths(dir));
    if (await stopLoadBalancer(dir)) deleted = true;
    if (await stopIpsec(dir)) deleted = true;
    if (netnsExists(names.namespace)) {
      await exec('ip', ['netns', 'del', names.namespace]);
      deleted = true;
    }
    // the host ends of the veths go with the namespace; one left over by a half-made pair goes here
    for (const p of known ? planInterfaces(known.spec, names) : []) if (linkExists(p.hostVeth)) await execOk('ip', ['link', 'del', p.hostVeth]);
    removeDir(dir);
    this.routers.delete(k);
    return deleted || known !== undefined;
  }

  status(): Array<{ routerUuid: string; namespace: string; present: boolean }> {
    return [...this.routers.values()].map((r) => ({ routerUuid: r.spec.routerUuid, namespace: r.names.namespace, present: netnsExists(r.names.namespace) }));
  }

  /** A router's per-VIP counters (empty when it or its namespace is missing). */
  async vipCountersOf(routerUuid: string): Promise<Map<string, VipCounters>> {
    const r = this.routers.get(hexOf(routerUuid));
    return r && netnsExists(r.names.namespace) ? this.vipCounters(r.names.namespace) : new Map();
  }

  list(): string[] {
    return [...this.routers.values()].map((r) => r.spec.routerUuid);
  }

  /** Watchdog step: a router whose namespace or DNS forwarder vanished is converged again; charon's log is capped. */
  async heal(routerUuid: string): Promise<void> {
    const r = this.routers.get(hexOf(routerUuid));
    if (!r) return;
    const broken =
      !netnsExists(r.names.namespace) ||
      (r.spec.dns !== undefined && r.spec.networks.length > 0 && findDnsmasq(r.dns) === undefined) ||
      loadBalancerBroken({ spec: r.spec, namespace: r.names.namespace, dir: r.dir }) ||
      ipsecBroken({ spec: r.spec, namespace: r.names.namespace, dir: r.dir });
    if (!broken) {
      const capped = await capIpsecLogs({ spec: r.spec, namespace: r.names.namespace, dir: r.dir });
      if (capped.rotated) this.o.log.info({ router: routerUuid }, 'charon.log over its cap: moved to charon.log.1');
      const revived = await reviveIpsec({ spec: r.spec, namespace: r.names.namespace, dir: r.dir });
      if (revived.length) this.o.log.info({ router: routerUuid, connections: revived }, 'IPsec connections down: initiated again');
      return;
    }
    this.o.log.warn({ router: routerUuid, namespace: r.names.namespace }, 'VPC router namespace, DNS forwarder, haproxy or charon gone: converging it again');
    await this.converge(r, undefined);
  }

  /** Per-listener backend state from the router's haproxy. */
  lbStatus(routerUuid: string): ReturnType<typeof loadBalancerStatus> {
    const r = this.get(routerUuid);
    return loadBalancerStatus({ spec: r.spec, namespace: r.names.namespace, dir: r.dir });
  }

  /** The router's IPsec connections as charon sees them. */
  ipsecStatus(routerUuid: string): ReturnType<typeof ipsecStatus> {
    const r = this.get(routerUuid);
    return ipsecStatus({ spec: r.spec, namespace: r.names.namespace, dir: r.dir });
  }

  get(routerUuid: string): Router {
    const r = this.routers.get(hexOf(routerUuid));
    if (!r) throw new TStackError('NOT_FOUND', `VPC router ${routerUuid} does not run on this host`, { field: 'routerUuid' });
    return r;
  }
}
