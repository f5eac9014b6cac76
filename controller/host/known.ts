// What this controller knows a host to have (an L2's bridge, an image in a primary storage's
// cache), learned from its agents' successful answers, so that a VM create does not ask for them
// again (issue 19: network/bridge/create and ps/image-cache went to the agent for every VM).
//
// Knowledge is a hint, never the truth: it is kept only while the host is the same as when it was
// learned — its stamp (boot id, every agent's start time, last connect date, status, all from the
// host record the tracker and reconnects keep up to date) — and at most maxAgeMs (60 s: no
// periodic pass checks bridges, so what changed behind the controller's back is asked about
// again at least once a minute while nothing uses it); a request that could only succeed with
// the thing in place renews it (confirm). The tracker and reconnects also
// forget a host outright. A caller that acted on knowledge and then met a sign the thing is gone
// (a missing bridge at vm/start, IMAGE_NOT_FOUND) forgets it and asks the agent again, once.
import type { Resource } from '../store/types.js';
import type { HostAgents } from './service.js';

interface Fact {
  value: unknown;
  at: number;
}

interface HostFacts {
  stamp: string;
  facts: Map<string, Fact>;
}

/** The host as it was when a fact was learned: any change (agent restart, reboot, reconnect, disconnect) voids what was learned. */
export function hostStamp(host: Resource): string {
  const a = host._agents as HostAgents | undefined;
  return `${String(host.status)}|${String(host.bootId)}|${String(host.lastConnectDate)}|${a?.kvmagent?.startedAt ?? ''}|${a?.storageagent?.startedAt ?? ''}|${a?.vrouteragent?.startedAt ?? ''}`;
}

export class HostKnowledge {
  private hosts = new Map<string, HostFacts>();
  /** host + key → the latest request begun: an answer to an older one (overtaken) teaches nothing. */
  private asked = new Map<string, number>();
  private seq = 0;

  constructor(
    readonly maxAgeMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** What was learned of `key` on this host (the record just read), if it still holds. */
  get<T>(host: Resource, key: string): T | undefined {
    const h = this.hosts.get(host.uuid);
    if (!h) return undefined;
    if (host.status !== 'Connected' || h.stamp !== hostStamp(host)) {
      this.hosts.delete(host.uuid);
      return undefined;
    }
    const f = h.facts.get(key);
    if (!f) return undefined;
    if (this.now() - f.at >= this.maxAgeMs) {
      h.facts.delete(key);
      return undefined;
    }
    return f.value as T;
  }

  /** A request for `key` is sent: until it is answered, what the host holds is unknown. Returns the token set() takes. */
  begin(hostUuid: string, key: string): number {
    this.forget(hostUuid, key);
    const t = ++this.seq;
    this.asked.set(`${hostUuid}\u0000${key}`, t);
    return t;
  }

  /**
   * The agent answered the request `token` (begin()) for `key`: it is in place on this host, unless
   * another request for it began since. `host`: the record read before the request (a restart since voids it).
   */
  set(host: Resource, key: string, value: unknown, token: number): void {
    const id = `${host.uuid}\u0000${key}`;
    if (this.asked.get(id) !== token) return;
    this.asked.delete(id);
    if (host.status !== 'Connected' || this.maxAgeMs <= 0) return;
    const stamp = hostStamp(host);
    let h = this.hosts.get(host.uuid);
    if (!h || h.stamp !== stamp) this.hosts.set(host.uuid, (h = { stamp, facts: new Map() }));
    h.facts.set(key, { value, at: this.now() });
  }

  /** Requests in flight by host and request identity (share()). */
  private inflight = new Map<string, Promise<unknown>>();
  /**
   * `ask()`, unless a request with the same `id` (the fact's key and whatever else the request
   * depends on) to this host is in flight: then its answer (or failure) is this one's. Creates
   * placed on one host at once asked it for the same image cache or bridge each (issue 19:
   * ps/image-cache 0.99 per VM at 4 VMs a host); the agent's answer holds for all of them.
   */
  share<T>(hostUuid: string, id: string, ask: () => Promise<T>): Promise<T> {
    const k = `${hostUuid}\u0000${id}`;
    const cur = this.inflight.get(k);
    if (cur) return cur as Promise<T>;
    const p = ask().finally(() => {
      if (this.inflight.get(k) === p) this.inflight.delete(k);
    });
    this.inflight.set(k, p);
    return p;
  }
  /** This knowledge's clock (epoch ms): what confirm() takes as a request's send time. */
  time(): number {
    return this.now();
  }

  /**
   * A request sent at `since` (time()) succeeded only because the host had the fact's thing
   * (a root volume made from the cached image, a VM started on its bridges: each fails, naming
   * it, when it is missing): the fact holds as of then, as if just learned. `key` a fact key, or
   * a prefix with `match` choosing among its facts by value. Only a fact still kept for the same
   * host and with no request for it begun since is renewed (a forgotten value is not restored).
   */
  confirm(host: Resource, key: string, since: number, match?: (value: unknown) => boolean): void {
    const h = this.hosts.get(host.uuid);
    if (!h || host.status !== 'Connected' || h.stamp !== hostStamp(host)) return;
    for (const [k, f] of match ? h.facts : [[key, h.facts.get(key)] as const]) {
      if (!f || (match ? !k.startsWith(key) || !match(f.value) : false)) continue;
      if (this.asked.has(`${host.uuid}\u0000${k}`) || f.at >= since) continue;
      f.at = Math.min(since, this.now());
    }
  }

  /** Forget one fact, or everything known of the host. */
  forget(hostUuid: string, key?: string): void {
    if (key === undefined) this.hosts.delete(hostUuid);
    else this.hosts.get(hostUuid)?.facts.delete(key);
  }

  /** Forget the facts of a host whose key starts with `prefix` (e.g. every bridge). */
  forgetPrefix(hostUuid: string, prefix: string): void {
    const h = this.hosts.get(hostUuid);
    if (!h) return;
    for (const k of [...h.facts.keys()]) if (k.startsWith(prefix)) h.facts.delete(k);
  }

  /** Hosts with facts kept (tests). */
  get size(): number {
    return this.hosts.size;
  }
}
