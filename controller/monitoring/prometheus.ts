// The Prometheus that stores the metrics (Debian's `prometheus` package), run by the controller
// as a child process listening on 127.0.0.1, and its scrape configuration kept current:
//
//   <dataDir>/prometheus/prometheus.yml        one scrape job per connected host's agent (kvmagent:
//                                              ZStack/VM and ZStack/Host; vrouteragent: ZStack/VIP)
//   <dataDir>/prometheus/targets/<host>[-vrouteragent].json   file SD: the agent's address, label HostUuid
//   <dataDir>/prometheus/tokens/<host>[-vrouteragent]         its bearer token (0600; re-read per scrape)
//   <dataDir>/prometheus/tokens/controller     the controller's own scrape token (job tstack-controller:
//                                              L3 / storage metrics from the inventory, /v1/metrics/export)
//   <dataDir>/prometheus/data                  the TSDB (retention: --storage.tsdb.retention.time)
//
// Agents have one token each and Prometheus takes credentials per job, not per target: hence a
// job per host. A target moving (new port or address) is a file-SD change Prometheus picks up
// by itself; a host coming or going changes the job list and reloads the config (POST /-/reload).
import { mkdir, readdir, rm, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from '../../shared/log.js';
import { startProcess, type RunningProcess } from '../../shared/exec.js';
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore, Resource } from '../store/types.js';

const log = logger('prometheus');

export interface PrometheusOptions {
  /** Use this Prometheus (already running, configured elsewhere) instead of starting one. */
  url?: string;
  binary?: string;
  /** 127.0.0.1 port of the Prometheus we start (default 9090). */
  port?: number;
  /** TSDB retention (default '15d'). */
  retention?: string;
  /** Scrape interval (default '15s'). */
  scrapeInterval?: string;
}

/** The controller as a scrape target of its own (set by the monitoring module once it listens). */
export interface SelfTarget {
  /** http(s)://host:port of this controller. */
  url: string;
  token: string;
}

export interface ScrapeTarget {
  hostUuid: string;
  agent: ScrapedAgent;
  address: string;
  token: string;
}

/** The agents Prometheus scrapes; the kvmagent's files keep their historical names (<host>). */
export const SCRAPED_AGENTS = ['kvmagent', 'vrouteragent'] as const;
export type ScrapedAgent = (typeof SCRAPED_AGENTS)[number];
/** The file-name key of one agent's target and token files. */
export const targetKey = (t: { hostUuid: string; agent: ScrapedAgent }): string => (t.agent === 'kvmagent' ? t.hostUuid : `${t.hostUuid}-${t.agent}`);

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const KEY_RE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(-vrouteragent)?$/i;
const ADDR_RE = /^[A-Za-z0-9.-]+:\d{1,5}$/;
const DURATION_RE = /^\d+(ms|s|m|h|d|w|y)$/;

/** The agents' scrape targets of the inventory's connected hosts (validated: they go into files). */
export function targetsOf(hosts: Resource[]): ScrapeTarget[] {
  const out: ScrapeTarget[] = [];
  for (const h of hosts) {
    if (h.status !== 'Connected' || !UUID_RE.test(h.uuid)) continue;
    for (const agent of SCRAPED_AGENTS) {
      const a = (h._agents as Record<string, { port?: number; token?: string }> | undefined)?.[agent];
      const address = `${String(h.managementIp)}:${String(a?.port)}`;
      if (!a?.token || !ADDR_RE.test(address)) continue;
      out.push({ hostUuid: h.uuid, agent, address, token: a.token });
    }
  }
  return out.sort((a, b) => targetKey(a).localeCompare(targetKey(b)));
}

/** prometheus.yml for these agents (pure); `keys` are targetKey()s. */
export function renderConfig(dir: string, keys: string[], scrapeInterval: string, self?: { scheme: 'http' | 'https'; address: string }): string {
  const lines = ['# written by tstack-controller (controller/monitoring/prometheus.ts); do not edit', 'global:', `  scrape_interval: ${scrapeInterval}`, `  evaluation_interval: ${scrapeInterval}`, 'scrape_configs:'];
  if (self) {
    lines.push(
      '  - job_name: tstack-controller',
      '    metrics_path: /v1/metrics/export',
      `    scheme: ${self.scheme}`,
      '    authorization:',
      '      type: Bearer',
      `      credentials_file: ${JSON.stringify(join(dir, 'tokens', 'controller'))}`,
      '    static_configs:',
      `      - targets: [${JSON.stringify(self.address)}]`,
    );
  }
  for (const h of keys) {
    const m = KEY_RE.exec(h);
    if (!m) throw new TStackError('INVALID_ARGUMENT', `not a scrape target key: ${h}`);
    lines.push(
      `  - job_name: ${m[2] ? `vrouteragent-${m[1]!}` : `kvmagent-${h}`}`,
      '    metrics_path: /metrics',
      '    authorization:',
      '      type: Bearer',
      `      credentials_file: ${JSON.stringify(join(dir, 'tokens', h))}`,
      '    file_sd_configs:',
      `      - files: [${JSON.stringify(join(dir, 'targets', `${h}.json`))}]`,
      '        refresh_interval: 30s',
    );
  }
  if (keys.length === 0 && !self) lines.push('  []');
  return lines.join('\n') + '\n';
}

/** scheme and host:port of a controller URL (validated: it goes into the config file). */
export function selfAddress(url: string): { scheme: 'http' | 'https'; address: string } | undefined {
  const m = /^(https?):\/\/([A-Za-z0-9.-]+:\d{1,5})\/?$/.exec(url);
  if (!m) {
    log.warn({ url }, 'the controller URL is not http(s)://host:port: its inventory metrics are not scraped');
    return undefined;
  }
  return { scheme: m[1] as 'http' | 'https', address: m[2]! };
}

async function writeAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
}

export class PrometheusManager {
  readonly dir: string;
  private proc?: RunningProcess;
  private jobs = '';
  private syncing: Promise<void> = Promise.resolve();
  readonly url: string;
  /** When this manager's Prometheus started answering (ms): data older than that may be missing. */
  startedAt = Date.now();
  /** The controller's own target (see SelfTarget); a change reloads the config on the next sync. */
  self?: SelfTarget;

  constructor(
    private readonly store: InventoryStore,
    dataDir: string,
    private readonly o: PrometheusOptions = {},
  ) {
    this.dir = join(dataDir, 'prometheus');
    if (o.retention !== undefined && !DURATION_RE.test(o.retention)) throw new TStackError('INVALID_ARGUMENT', `prometheus retention: expected a duration like 15d, got ${o.retention}`);
    if (o.scrapeInterval !== undefined && !DURATION_RE.test(o.scrapeInterval)) throw new TStackError('INVALID_ARGUMENT', `prometheus scrape interval: expected a duration like 15s, got ${o.scrapeInterval}`);
    this.url = (o.url ?? `http://127.0.0.1:${o.port ?? 9090}`).replace(/\/+$/, '');
  }

  /** Write the configuration and start Prometheus (unless an external one is used). */
  async start(): Promise<void> {
    await mkdir(join(this.dir, 'targets'), { recursive: true });
    await mkdir(join(this.dir, 'tokens'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.dir, 'data'), { recursive: true });
    await this.sync(false);
    if (this.o.url) return;
    this.proc = await startProcess(
      this.o.binary ?? 'prometheus',
      [
        `--config.file=${join(this.dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(this.dir, 'data')}`,
        `--storage.tsdb.retention.time=${this.o.retention ?? '15d'}`,
        `--web.listen-address=127.0.0.1:${this.o.port ?? 9090}`,
        '--web.enable-lifecycle',
        '--log.level=warn',
      ],
      { logFile: join(this.dir, 'prometheus.log') },
    );
    log.info({ pid: this.proc.pid, url: this.url }, 'prometheus started');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await fetch(`${this.url}/-/ready`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
      if (ok) break;
      if (!this.proc.running || Date.now() > deadline) throw new TStackError('INTERNAL', `prometheus did not become ready; see ${join(this.dir, 'prometheus.log')}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    this.startedAt = Date.now();
  }

  async stop(): Promise<void> {
    await this.syncing.catch(() => undefined);
    await this.proc?.stop(10_000);
  }

  /** Bring the targets up to date with the inventory (serialised; call on host changes). */
  sync(reload = true): Promise<void> {
    this.syncing = this.syncing.catch(() => undefined).then(() => this.doSync(reload));
    return this.syncing;
  }

  private async doSync(reload: boolean): Promise<void> {
    const hosts = (await this.store.list({ kind: 'host', limit: 100_000 })).items;
    const targets = targetsOf(hosts);
    const keep = new Set(targets.map(targetKey));
    for (const t of targets) {
      await writeAtomic(join(this.dir, 'tokens', targetKey(t)), t.token, 0o600);
      await writeAtomic(join(this.dir, 'targets', `${targetKey(t)}.json`), JSON.stringify([{ targets: [t.address], labels: { HostUuid: t.hostUuid } }]) + '\n');
    }
    const self = this.self ? selfAddress(this.self.url) : undefined;
    if (self && this.self) await writeAtomic(join(this.dir, 'tokens', 'controller'), this.self.token, 0o600);
    const jobs = [...keep, self ? `${self.scheme}://${self.address}` : ''].join(',');
    if (jobs !== this.jobs || !reload) {
      await writeAtomic(join(this.dir, 'prometheus.yml'), renderConfig(this.dir, [...keep], this.o.scrapeInterval ?? '15s', self));
      if (reload && !this.o.url) {
        const r = await fetch(`${this.url}/-/reload`, { method: 'POST', signal: AbortSignal.timeout(10_000) }).catch((e: unknown) => e as Error);
        if (r instanceof Error || !r.ok) log.warn({ err: r instanceof Error ? r.message : `HTTP ${r.status}` }, 'prometheus reload failed');
      }
      this.jobs = jobs;
    }
    // hosts that went away: their files (the job is gone from the config already)
    for (const dirName of ['targets', 'tokens']) {
      for (const f of await readdir(join(this.dir, dirName)).catch(() => [] as string[])) {
        const h = f.replace(/\.json$/, '');
        if (!keep.has(h) && KEY_RE.test(h)) await rm(join(this.dir, dirName, f), { force: true });
      }
    }
  }

  /** A PromQL range query; the matrix result. */
  async queryRange(query: string, start: number, end: number, step: number): Promise<Array<{ metric: Record<string, string>; values: Array<[number, string]> }>> {
    const qs = new URLSearchParams({ query, start: String(start), end: String(end), step: String(step) });
    return (await this.api('query_range', qs)) as Array<{ metric: Record<string, string>; values: Array<[number, string]> }>;
  }

  /** A PromQL instant query; the vector result. */
  async query(query: string, time?: number): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
    const qs = new URLSearchParams({ query });
    if (time !== undefined) qs.set('time', String(time));
    return (await this.api('query', qs)) as Array<{ metric: Record<string, string>; value: [number, string] }>;
  }

  /** Names of the series Prometheus holds. */
  async seriesNames(): Promise<string[]> {
    const r = await fetch(`${this.url}/api/v1/label/__name__/values`, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
    if (!r?.ok) return [];
    return ((await r.json()) as { data?: string[] }).data ?? [];
  }

  private async api(path: string, qs: URLSearchParams): Promise<unknown> {
    let r: Response;
    try {
      r = await fetch(`${this.url}/api/v1/${path}`, { method: 'POST', body: qs, signal: AbortSignal.timeout(30_000) });
    } catch (e) {
      throw new TStackError('AGENT_UNREACHABLE', `the metrics store (Prometheus at ${this.url}) does not answer: ${(e as Error).message}`);
    }
    const body = (await r.json().catch(() => ({}))) as { status?: string; data?: { result?: unknown }; error?: string };
    if (!r.ok || body.status !== 'success') throw new TStackError(r.status === 400 || r.status === 422 ? 'INVALID_ARGUMENT' : 'INTERNAL', `metrics query failed: ${body.error ?? `HTTP ${r.status}`}`);
    return body.data?.result ?? [];
  }
}
