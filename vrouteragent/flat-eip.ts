// Flat-network EIPs of this host (render/flat-eip.ts for the layout). flat/eip/apply carries
// the host's whole EIP set: it is validated whole, saved (write + rename) before anything is
// touched, then converged; a restarted agent converges from the saved file, and the watchdog
// converges again when the namespace, a link or the bridge steering went missing. An empty set
// removes the namespace, the host veths and the ebtables chains.
import { join } from 'node:path';
import { existsSync, rmSync } from 'node:fs';
import { invalid } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { exec, execOk, execOut } from '../shared/exec.js';
import { flatEipNames, uuidHex, type FlatEipNames, type NameScheme } from './names.js';
import { checkBridge, ensureVeth, linkExists, netnsExists } from './netns.js';
import { isHostAddress, parseCidr, type Subnet } from './ip.js';
import { planFlatEips, type FlatEipPlan, type FlatEipSpec } from './render/flat-eip.js';
import { ensureDir, readJson, writeIfChanged, writeJson } from './state.js';

export interface FlatEipOptions {
  dataDir: string;
  scheme: NameScheme;
  log: Logger;
}

const overlaps = (a: Subnet, b: Subnet): boolean => a.first <= b.last && b.first <= a.last;

/** Every address that reaches ip, iptables or ebtables checked against its network; 400 naming the field. */
export function validateFlatEips(s: FlatEipSpec): void {
  uuidHex(s.hostUuid);
  const nets = new Map<string, { s: Subnet; gateway?: string; side: 'public' | 'private' }>();
  const check = (side: 'public' | 'private', list: FlatEipSpec['publicNetworks'], field: string): void => {
    list.forEach((n, i) => {
      const f = `${field}.${i}`;
      const sub = parseCidr(n.cidr);
      if (sub.network !== n.cidr.split('/')[0]) throw invalid(`${f}.cidr`, `${n.cidr} has host bits set`);
      if (sub.prefix > 30) throw invalid(`${f}.cidr`, `${n.cidr} is too small (at most /30)`);
      if (n.gateway !== undefined && !isHostAddress(sub, n.gateway)) throw invalid(`${f}.gateway`, `${n.gateway} is not a host address of ${n.cidr}`);
      const k = uuidHex(n.l3NetworkUuid);
      if (nets.has(k)) throw invalid(`${f}.l3NetworkUuid`, `network ${n.l3NetworkUuid} is given twice`);
      for (const o of nets.values()) if (overlaps(o.s, sub)) throw invalid(`${f}.cidr`, `${n.cidr} overlaps another network of this request`);
      nets.set(k, { s: sub, ...(n.gateway ? { gateway: n.gateway } : {}), side });
    });
  };
  check('public', s.publicNetworks, 'publicNetworks');
  check('private', s.privateNetworks, 'privateNetworks');
  const seen = { eip: new Set<string>(), ip: new Set<string>(), mac: new Set<string>() };
  s.eips.forEach((e, i) => {
    const f = `eips.${i}`;
    const pub = nets.get(uuidHex(e.publicL3NetworkUuid));
    if (pub?.side !== 'public') throw invalid(`${f}.publicL3NetworkUuid`, `${e.publicL3NetworkUuid} is not one of publicNetworks`);
    const priv = nets.get(uuidHex(e.privateL3NetworkUuid));
    if (priv?.side !== 'private') throw invalid(`${f}.privateL3NetworkUuid`, `${e.privateL3NetworkUuid} is not one of privateNetworks`);
    if (!isHostAddress(pub.s, e.eip) || e.eip === pub.gateway) throw invalid(`${f}.eip`, `${e.eip} is not a host address of its public network (or is its gateway)`);
    if (!isHostAddress(priv.s, e.privateIp) || e.privateIp === priv.gateway) throw invalid(`${f}.privateIp`, `${e.privateIp} is not a host address of its private network (or is its gateway)`);
    const mac = e.mac.toLowerCase();
    if (mac === '00:00:00:00:00:00' || (parseInt(mac.slice(0, 2), 16) & 1) === 1) throw invalid(`${f}.mac`, `${e.mac} is not a unicast MAC`);
    for (const [k, v] of [['eip', e.eip], ['ip', e.privateIp], ['mac', mac]] as const) {
      if (seen[k].has(v)) throw invalid(`${f}.${k === 'ip' ? 'privateIp' : k}`, `${v} is given twice`);
      seen[k].add(v);
    }
  });
}

export class FlatEipService {
  private spec: FlatEipSpec | undefined;
  private readonly names: FlatEipNames;
  private readonly file: string;

  constructor(private readonly o: FlatEipOptions) {
    this.names = flatEipNames(o.scheme);
    this.file = join(o.dataDir, 'vrouter', 'flat-eip', 'desired.json');
  }

  async recover(): Promise<void> {
    const saved = readJson<FlatEipSpec | undefined>(this.file, undefined);
    if (!saved) return;
    this.spec = saved;
    try {
      await this.converge(undefined);
      this.o.log.info({ eips: saved.eips.length, namespace: this.names.namespace }, 'flat EIPs recovered');
    } catch (e) {
      this.o.log.error({ err: (e as Error).message }, 'cannot recover the flat EIPs (kept on disk; the next apply retries)');
    }
  }

  async apply(s: FlatEipSpec, signal?: AbortSignal): Promise<{ namespace?: string; eips: number; changed: boolean }> {
    validateFlatEips(s);
    if (s.eips.length === 0) {
      const changed = await this.teardown();
      return { eips: 0, changed };
    }
    const used = new Set(s.eips.flatMap((e) => [e.publicL3NetworkUuid, e.privateL3NetworkUuid]));
    [...s.publicNetworks, ...s.privateNetworks].filter((n) => used.has(n.l3NetworkUuid)).forEach((n) => checkBridge(n.bridge));
    ensureDir(join(this.o.dataDir, 'vrouter', 'flat-eip'));
    const wrote = writeJson(this.file, s);
    this.spec = s;
    const changed = await this.converge(signal);
    return { namespace: this.names.namespace, eips: s.eips.length, changed: wrote || changed };
  }

  private async converge(signal: AbortSignal | undefined): Promise<boolean> {
    const s = this.spec;
    if (!s || s.eips.length === 0) return this.teardown();
    const ns = this.names.namespace;
    const o = { signal };
    const plan = planFlatEips(s, this.names);
    let changed = false;
    if (!netnsExists(ns)) {
      await exec('ip', ['netns', 'add', ns], o);
      changed = true;
    }
    await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], o);
    // VIPs answered in ARP only on their own interface; no IPv6 chatter on the L2s
    await exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ...o, netns: ns });
    for (const i of plan.ifs) if (await ensureVeth(ns, i, signal)) changed = true;
    const links = JSON.parse((await execOut('ip', ['-n', ns, '-j', 'link', 'show'])) || '[]') as Array<{ ifname: string }>;
    const want = new Set(plan.ifs.map((i) => i.nsIf));
    for (const l of links) {
      const name = l.ifname.split('@')[0]!;
      if (name === 'lo' || want.has(name)) continue;
      await exec('ip', ['-n', ns, 'link', 'del', name], o);
      changed = true;
    }
    if (await this.ensureRouting(ns, plan, signal)) changed = true;
    writeIfChanged(join(this.o.dataDir, 'vrouter', 'flat-eip', 'iptables.rules'), plan.iptables);
    await exec('iptables-restore', ['-w', '10'], { ...o, netns: ns, stdin: plan.iptables, errorCode: 'NETWORK_ERROR' });
    if (await this.ensureSteering(plan, signal)) changed = true;
    return changed;
  }

  /** Routes (main and the per-public-network tables), source rules and permanent neighbours: wanted ones replaced, others deleted. */
  private async ensureRouting(ns: string, plan: FlatEipPlan, signal: AbortSignal | undefined): Promise<boolean> {
    const o = { signal };
    let changed = false;
    const ip = (args: string[]): Promise<unknown> => exec('ip', ['-n', ns, ...args], o);
    type R = { dst: string; dev?: string; gateway?: string; table?: string; protocol?: string; type?: string };
    const have = (JSON.parse((await execOut('ip', ['-n', ns, '-j', 'route', 'show', 'table', 'all'])) || '[]') as R[]).filter((r) => (r.type ?? 'unicast') === 'unicast' && r.table !== 'local' && r.protocol !== 'kernel');
    const keyOf = (table: string, dst: string, dev: string | undefined, via: string | undefined): string => `${table}|${dst === 'default' ? 'default' : dst.includes('/') ? dst : `${dst}/32`}|${dev ?? ''}|${via ?? ''}`;
    const wanted = new Set(plan.routes.map((r) => keyOf(r.table, r.dst, r.dev, r.via)));
    const present = new Set<string>();
    for (const r of have) {
      const k = keyOf(r.table ?? 'main', r.dst, r.dev, r.gateway);
      present.add(k);
      if (wanted.has(k)) continue;
      await ip(['route', 'del', r.dst, 'table', r.table ?? 'main', ...(r.dev ? ['dev', r.dev] : [])]);
      changed = true;
    }
    for (const r of plan.routes) {
      if (present.has(keyOf(r.table, r.dst, r.dev, r.via))) continue;
      await ip(['route', 'replace', r.dst, ...(r.via ? ['via', r.via] : []), 'dev', r.dev, 'table', r.table]);
      changed = true;
    }
    const rules = (JSON.parse((await execOut('ip', ['-n', ns, '-j', 'rule', 'show'])) || '[]') as Array<{ priority: number; src?: string; srclen?: number; table?: string }>).filter((r) => r.priority >= 1000 && r.priority < 30000);
    const ruleKey = (p: number, from: string, table: string): string => `${p}|${from}|${table}`;
    const wantRules = new Set(plan.rules.map((r) => ruleKey(r.priority, r.from, r.table)));
    const haveRules = new Set<string>();
    for (const r of rules) {
      const k = ruleKey(r.priority, `${r.src ?? ''}/${r.srclen ?? 32}`, String(r.table));
      haveRules.add(k);
      if (wantRules.has(k)) continue;
      await ip(['rule', 'del', 'priority', String(r.priority)]);
      changed = true;
    }
    for (const r of plan.rules) {
      if (haveRules.has(ruleKey(r.priority, r.from, r.table))) continue;
      await ip(['rule', 'add', 'from', r.from, 'lookup', r.table, 'priority', String(r.priority)]);
      changed = true;
    }
    const neigh = JSON.parse((await execOut('ip', ['-n', ns, '-j', 'neigh', 'show', 'nud', 'permanent'])) || '[]') as Array<{ dst: string; dev: string; lladdr?: string }>;
    const wantN = new Set(plan.neighbours.map((x) => `${x.ip}|${x.dev}|${x.mac}`));
    const haveN = new Set(neigh.map((x) => `${x.dst}|${x.dev}|${x.lladdr ?? ''}`));
    for (const x of neigh) if (!wantN.has(`${x.dst}|${x.dev}|${x.lladdr ?? ''}`)) {
      await ip(['neigh', 'del', x.dst, 'dev', x.dev]);
      changed = true;
    }
    for (const x of plan.neighbours) if (!haveN.has(`${x.ip}|${x.dev}|${x.mac}`)) {
      await ip(['neigh', 'replace', x.ip, 'lladdr', x.mac, 'nud', 'permanent', 'dev', x.dev]);
      changed = true;
    }
    return changed;
  }

  /** Jump rules present (once), both chains replaced in one ebtables-restore transaction. */
  private async ensureSteering(plan: FlatEipPlan, signal: AbortSignal | undefined): Promise<boolean> {
    const o = { signal };
    // the chains must exist before a jump to them; declaring them in a restore flushes them
    await exec('ebtables-restore', ['--noflush'], { ...o, stdin: plan.ebtables, errorCode: 'NETWORK_ERROR' });
    let changed = false;
    for (const [table, chain, target] of [['nat', 'PREROUTING', this.names.natChain], ['filter', 'FORWARD', this.names.filterChain]] as const) {
      if (await this.jumps(table, chain, target)) continue;
      await exec('ebtables', ['-t', table, '-I', chain, '1', '-j', target], o);
      changed = true;
    }
    return changed;
  }

  private async jumps(table: string, chain: string, target: string): Promise<boolean> {
    const out = await execOut('ebtables', ['-t', table, '-L', chain]);
    return out.split('\n').some((l) => l.trim() === `-j ${target}`);
  }

  /** Nothing left: namespace, host veths, ebtables chains and the saved state removed. */
  private async teardown(): Promise<boolean> {
    let changed = false;
    const n = this.names;
    // the usual case (a host that never had any): nothing to look at, nor to take from another
    // agent on the machine (tests run several)
    if (!this.spec && !existsSync(this.file)) return false;
    for (const [table, chain, target] of [['nat', 'PREROUTING', n.natChain], ['filter', 'FORWARD', n.filterChain]] as const) {
      while (await this.jumps(table, chain, target).catch(() => false)) {
        if (!(await execOk('ebtables', ['-t', table, '-D', chain, '-j', target]))) break;
        changed = true;
      }
      // a chain is deleted only once empty
      if ((await execOk('ebtables', ['-t', table, '-F', target])) && (await execOk('ebtables', ['-t', table, '-X', target]))) changed = true;
    }
    if (netnsExists(n.namespace)) {
      await exec('ip', ['netns', 'del', n.namespace]);
      changed = true;
    }
    const s = this.spec ?? readJson<FlatEipSpec | undefined>(this.file, undefined);
    for (const x of [...(s?.publicNetworks ?? []).map((p) => n.hostVeth('p', p.l3NetworkUuid)), ...(s?.privateNetworks ?? []).map((p) => n.hostVeth('g', p.l3NetworkUuid))]) {
      if (linkExists(x) && (await execOk('ip', ['link', 'del', x]))) changed = true;
    }
    rmSync(join(this.o.dataDir, 'vrouter', 'flat-eip'), { recursive: true, force: true });
    this.spec = undefined;
    return changed;
  }

  /** Watchdog step: the namespace, a link or a jump gone → converge again. */
  async heal(): Promise<void> {
    const s = this.spec;
    if (!s || s.eips.length === 0) return;
    const plan = planFlatEips(s, this.names);
    const broken =
      !netnsExists(this.names.namespace) ||
      plan.ifs.some((i) => !linkExists(i.hostVeth)) ||
      !(await this.jumps('nat', 'PREROUTING', this.names.natChain).catch(() => false)) ||
      !(await this.jumps('filter', 'FORWARD', this.names.filterChain).catch(() => false));
    if (!broken) return;
    this.o.log.warn({ namespace: this.names.namespace }, 'flat EIP namespace, link or bridge steering gone: converging again');
    await this.converge(undefined);
  }

  get active(): boolean {
    return this.spec !== undefined && this.spec.eips.length > 0;
  }
}
