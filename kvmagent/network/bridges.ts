// L2 bridges on the host: read the links, plan (pure, plan.ts), run the plan. The real backend
// runs `ip`/`bridge` through the exec helper, optionally inside a network namespace (tests and
// nested setups); the fake keeps links in memory for controller tests and the scale simulator.
import { exec, execOut } from '../../shared/exec.js';
import { TStackError } from '../../shared/errors.js';
import type { BridgeRequestT } from '../../shared/protocol/kvm.js';
import { planCreate, planDelete, parseIpLinks, parseFdbPeers, show, type Cmd, type HostLinks, type LinkState } from './plan.js';
import { l2Names } from './names.js';

export interface BridgeResultT {
  bridgeName: string;
  memberName?: string;
  changed: boolean;
  exists: boolean;
  problems: string[];
}

export interface NetworkBackend {
  create(req: BridgeRequestT, signal?: AbortSignal): Promise<BridgeResultT>;
  delete(req: BridgeRequestT, signal?: AbortSignal): Promise<BridgeResultT>;
  check(req: BridgeRequestT): Promise<BridgeResultT>;
  /** Whether a bridge of this name exists (vm/start checks NIC bridges with it). */
  bridgeExists(name: string): Promise<boolean>;
}

function result(names: { bridge: string; member?: string }, changed: boolean, exists: boolean, problems: string[]): BridgeResultT {
  const r: BridgeResultT = { bridgeName: names.bridge, changed, exists, problems };
  if (names.member) r.memberName = names.member;
  return r;
}

/** A kernel without CONFIG_VLAN_8021Q says "Unknown device type" for `type vlan`. */
function explainIpError(e: TStackError, cmd: Cmd): TStackError {
  const stderr = String(e.details?.stderr ?? '');
  if (/Unknown device type/i.test(stderr) && cmd.args.includes('vlan')) {
    return new TStackError('NETWORK_ERROR', `this host's kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q); Vlan L2 networks cannot be realized here — use Vxlan or a host with 8021q`, {
      ...e.details,
      command: show(cmd),
    });
  }
  if (/Unknown device type/i.test(stderr) && cmd.args.includes('vxlan')) {
    return new TStackError('NETWORK_ERROR', `this host's kernel has no VXLAN support (CONFIG_VXLAN)`, { ...e.details, command: show(cmd) });
  }
  return new TStackError('NETWORK_ERROR', `${show(cmd)} failed: ${stderr.split('\n').pop() || e.message}`, { ...e.details, command: show(cmd) });
}

export class IpNetwork implements NetworkBackend {
  /** One change at a time: plans are computed from a snapshot of the links. */
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: { netns?: string } = {}) {}

  private xo(): { netns?: string } {
    return this.opts.netns ? { netns: this.opts.netns } : {};
  }

  async readLinks(): Promise<Map<string, LinkState>> {
    return parseIpLinks(await execOut('ip', ['-j', '-d', 'addr', 'show'], { ...this.xo(), timeoutMs: 15_000 }));
  }

  private async readHost(vxlanDev?: string): Promise<HostLinks> {
    const links = await this.readLinks();
    const fdb = new Map<string, string[]>();
    if (vxlanDev && links.get(vxlanDev)?.kind === 'vxlan') {
      fdb.set(vxlanDev, parseFdbPeers(await execOut('bridge', ['-j', 'fdb', 'show', 'dev', vxlanDev], { ...this.xo(), timeoutMs: 15_000 })));
    }
    return { links, fdb };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private async run(cmds: Cmd[], signal?: AbortSignal): Promise<void> {
    for (const c of cmds) {
      try {
        await exec(c.prog, c.args, { ...this.xo(), timeoutMs: 30_000, ...(signal ? { signal } : {}) });
      } catch (e) {
        throw explainIpError(TStackError.from(e), c);
      }
    }
  }

  async create(req: BridgeRequestT, signal?: AbortSignal): Promise<BridgeResultT> {
    return this.serial(async () => {
      const names = l2Names(req);
      const host = await this.readHost(req.type === 'Vxlan' ? names.member : undefined);
      const plan = planCreate(req, host);
      const createdMember = plan.cmds.some((c) => c.args[1] === 'add' && c.args.includes(names.member ?? '\0'));
      const createdBridge = plan.cmds.some((c) => c.args[1] === 'add' && c.args[3] === names.bridge);
      try {
        await this.run(plan.cmds, signal);
      } catch (e) {
        // roll back what this call created, so a failed create leaves nothing half-made
        const undo: Cmd[] = [];
        if (createdMember && names.member) undo.push({ prog: 'ip', args: ['link', 'del', 'dev', names.member] });
        if (createdBridge) undo.push({ prog: 'ip', args: ['link', 'del', 'dev', names.bridge] });
        for (const u of undo) await exec(u.prog, u.args, { ...this.xo(), timeoutMs: 15_000 }).catch(() => undefined);
        throw e;
      }
      return result(plan.names, plan.cmds.length > 0, true, []);
    });
  }

  async delete(req: BridgeRequestT, signal?: AbortSignal): Promise<BridgeResultT> {
    return this.serial(async () => {
      const host = await this.readHost();
      const plan = planDelete(req, host);
      await this.run(plan.cmds, signal);
      return result(plan.names, plan.cmds.length > 0, false, []);
    });
  }

  async check(req: BridgeRequestT): Promise<BridgeResultT> {
    const names = l2Names(req);
    const host = await this.readHost(req.type === 'Vxlan' ? names.member : undefined);
    try {
      const plan = planCreate(req, host);
      return result(plan.names, false, plan.problems.length === 0 && plan.cmds.length === 0, plan.problems);
    } catch (e) {
      const err = TStackError.from(e);
      if (err.code === 'INVALID_ARGUMENT') throw err;
      return result(names, false, false, [err.message]);
    }
  }

  async bridgeExists(name: string): Promise<boolean> {
    try {
      const out = await execOut('ip', ['-j', '-d', 'link', 'show', 'dev', name], { ...this.xo(), timeoutMs: 10_000 });
      return parseIpLinks(out).get(name)?.kind === 'bridge';
    } catch {
      return false;
    }
  }
}

/** In-memory host network for controller tests and the scale simulator. */
export class FakeNetwork implements NetworkBackend {
  readonly links = new Map<string, LinkState>();
  readonly fdb = new Map<string, string[]>();

  constructor(physicalInterfaces: string[] = ['eth0', 'eth1']) {
    for (const p of physicalInterfaces) this.links.set(p, { name: p, up: true, mtu: 1500, ipv4: [] });
  }

  private apply(c: Cmd): void {
    const a = c.args;
    if (c.prog === 'bridge') {
      const dev = a[a.indexOf('dev') + 1]!;
      const dst = a[a.indexOf('dst') + 1]!;
      const cur = this.fdb.get(dev) ?? [];
      this.fdb.set(dev, a[1] === 'append' ? [...cur, dst] : cur.filter((x) => x !== dst));
      return;
    }
    if (a[1] === 'add') {
      const typeAt = a.indexOf('type');
      const kind = a[typeAt + 1]!;
      const name = kind === 'bridge' ? a[3]! : kind === 'vlan' ? a[a.indexOf('name') + 1]! : a[2]!;
      const s: LinkState = { name, kind, up: false, mtu: 1500, ipv4: [] };
      if (kind === 'vlan') {
        s.vlanId = Number(a[a.indexOf('id') + 1]);
        s.link = a[3]!;
      }
      if (kind === 'vxlan') {
        s.vni = Number(a[a.indexOf('id') + 1]);
        s.local = a[a.indexOf('local') + 1]!;
        s.dstPort = Number(a[a.indexOf('dstport') + 1]);
        if (a.includes('group')) s.group = a[a.indexOf('group') + 1]!;
      }
      this.links.set(name, s);
    } else if (a[1] === 'del') {
      this.links.delete(a[3]!);
      this.fdb.delete(a[3]!);
    } else if (a[1] === 'set') {
      const l = this.links.get(a[3]!);
      if (!l) throw new TStackError('NETWORK_ERROR', `Cannot find device "${a[3]}"`);
      const op = a[4];
      if (op === 'up') l.up = true;
      else if (op === 'master') l.master = a[5]!;
      else if (op === 'nomaster') delete l.master;
      else if (op === 'mtu') l.mtu = Number(a[5]);
    }
  }

  async create(req: BridgeRequestT): Promise<BridgeResultT> {
    const plan = planCreate(req, { links: this.links, fdb: this.fdb });
    for (const c of plan.cmds) this.apply(c);
    return result(plan.names, plan.cmds.length > 0, true, []);
  }

  async delete(req: BridgeRequestT): Promise<BridgeResultT> {
    const plan = planDelete(req, { links: this.links, fdb: this.fdb });
    for (const c of plan.cmds) this.apply(c);
    return result(plan.names, plan.cmds.length > 0, false, []);
  }

  async check(req: BridgeRequestT): Promise<BridgeResultT> {
    const plan = planCreate(req, { links: this.links, fdb: this.fdb });
    return result(plan.names, false, plan.cmds.length === 0, plan.problems);
  }

  async bridgeExists(name: string): Promise<boolean> {
    return this.links.get(name)?.kind === 'bridge';
  }
}
