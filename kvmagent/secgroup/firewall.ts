// Applies a rendered security-group firewall on the host (or inside a network namespace, for
// tests): read what tstack has now, render the complete desired state against it, then
//   1. ipset -exist restore   (member sets created/swapped atomically, before rules use them)
//   2. iptables-restore --noflush   (one transaction: only tstack-sg and tsg-* chains change,
//      the host's other rules survive; a failure leaves the previous ruleset intact)
//   3. ipset destroy of sets no rule references any more.
// One apply at a time: each one reads the state the previous left.
import { exec, execOut } from '../../shared/exec.js';
import type { HostFirewallT } from '../../shared/protocol/secgroup.js';
import { parseCurrent, renderFirewall, stateAfter, type CurrentFirewall, type RenderedFirewall } from './render.js';

export interface ApplyResult {
  nics: number;
  rules: number;
  sets: number;
  removedChains: number;
  removedSets: number;
  durationMs: number;
}

export class Firewall {
  private lock: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: { netns?: string } = {}) {}

  private xo(): { netns?: string; timeoutMs: number; errorCode: string } {
    return { ...(this.opts.netns ? { netns: this.opts.netns } : {}), timeoutMs: 30_000, errorCode: 'NETWORK_ERROR' };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  async current(): Promise<CurrentFirewall> {
    const save = await execOut('iptables-save', ['-t', 'filter'], this.xo());
    const sets = await execOut('ipset', ['list', '-n'], this.xo());
    return parseCurrent(save, sets);
  }

  /**
   * What the last successful apply left (undefined at start and after a failure). Trusting it
   * saves reading the tables (iptables-save costs about as much as the restore): the rendered
   * text re-declares (flushes and refills) every chain, so a hand-flushed chain is repaired
   * anyway, and anything the memory gets wrong (a hook or chain removed by hand) makes the
   * restore fail atomically, after which the real state is read and the apply redone.
   */
  private known: CurrentFirewall | undefined;

  private async restore(fw: HostFirewallT, cur: CurrentFirewall): Promise<RenderedFirewall> {
    const r = renderFirewall(fw, cur);
    if (r.ipset) await exec('ipset', ['-exist', 'restore'], { ...this.xo(), stdin: r.ipset });
    await exec('iptables-restore', ['-w', '10', '--noflush'], { ...this.xo(), stdin: r.iptables });
    return r;
  }

  apply(fw: HostFirewallT): Promise<ApplyResult> {
    return this.serial(async () => {
      const t0 = performance.now();
      let r: RenderedFirewall;
      const remembered = this.known;
      this.known = undefined;
      try {
        r = await this.restore(fw, remembered ?? (await this.current()));
      } catch (e) {
        if (!remembered) throw e;
        r = await this.restore(fw, await this.current());
      }
      for (const s of r.staleSets) await exec('ipset', ['destroy', s], { ...this.xo(), okCodes: [0, 1] });
      this.known = stateAfter(fw);
      return {
        nics: fw.nics.length,
        rules: r.rules,
        sets: fw.sets.length,
        removedChains: r.staleChains.length,
        removedSets: r.staleSets.length,
        durationMs: Math.round((performance.now() - t0) * 10) / 10,
      };
    });
  }
}

/** The in-memory stand-in (fake-driver agents, the scale simulator): renders, validates, remembers. */
export class FakeFirewall {
  state: CurrentFirewall = { hooked: false, chains: [], sets: [] };
  last: HostFirewallT | undefined;
  applies = 0;

  current(): Promise<CurrentFirewall> {
    return Promise.resolve(this.state);
  }

  apply(fw: HostFirewallT): Promise<ApplyResult> {
    const t0 = performance.now();
    const r = renderFirewall(fw, this.state);
    this.state = stateAfter(fw);
    this.last = fw;
    this.applies++;
    return Promise.resolve({ nics: fw.nics.length, rules: r.rules, sets: fw.sets.length, removedChains: r.staleChains.length, removedSets: r.staleSets.length, durationMs: performance.now() - t0 });
  }
}

export type FirewallBackend = Pick<Firewall, 'apply' | 'current'>;
