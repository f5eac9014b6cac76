// PXE servers on this host: per server a namespace on the provisioning L2's bridge (veth
// `<ifPrefix>p<uuid>` ↔ `pxe0`), dnsmasq in it (DHCP, TFTP, RA; rendered by render/pxe.ts) and
// an HTTP endpoint served by this agent process through a socket bound in the namespace
// (boot scripts, the ramdisk kernel and images from the images directory, and the ramdisks'
// callbacks). The spec is kept in <dataDir>/baremetal/pxe/<hex>/spec.json: a restarted agent
// re-applies it (dnsmasq keeps serving meanwhile: it daemonizes).
import { copyFileSync, createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { TStackError } from '../../shared/errors.js';
import { exec, execOk } from '../../shared/exec.js';
import type { Logger } from '../../shared/log.js';
import { DeployReport, InspectionReport, type DeployReportT, type InspectionReportT, type PxeServerSpecT } from '../../shared/protocol/baremetal.js';
import { validate } from '../../shared/protocol/schema.js';
import { MAX_HEADER_BYTES } from '../../shared/http/limits.js';
import { findDnsmasq, startDnsmasq, stopDnsmasq } from '../dnsmasq.js';
import { listenInNamespace } from '../metadata/server.js';
import { addrsOf, checkBridge, linkExists, netnsExists } from '../netns.js';
import { netmaskToPrefix } from '../ip.js';
import { checkScheme, uuidHex, type NameScheme } from '../names.js';
import { checkPxeSpec, pxePaths, raPrefix, renderBootstrapIpxe, renderDeployInstructions, renderMachineIpxe, renderPxeDnsmasqConf, type PxePaths } from '../render/pxe.js';
import type { DeployFiles } from './deploy.js';

export const PXE_IF = 'pxe0';
/** Files the images directory may hold (nothing else is served). */
export const PXE_IMAGES = ['vmlinuz', 'inspect.img', 'deploy.img'] as const;
const IPXE_FILES: Array<[string, string]> = [
  ['/usr/lib/ipxe/undionly.kpxe', 'undionly.kpxe'],
  ['/usr/lib/ipxe/ipxe.efi', 'ipxe.efi'],
];
const MAX_CALLBACK_BYTES = 1 << 20;

export interface PxeNames {
  namespace: string;
  hostVeth: string;
}

export function pxeNames(pxeServerUuid: string, scheme: NameScheme): PxeNames {
  checkScheme(scheme);
  const hex = uuidHex(pxeServerUuid);
  return { namespace: `${scheme.nsPrefix}-p-${hex}`, hostVeth: `${scheme.ifPrefix}p${hex.slice(0, 15 - scheme.ifPrefix.length - 1)}` };
}

/** What a ramdisk posts to /callback/<token>; the handler's answer is sent back as JSON. */
export type CallbackHandler = (pxeServerUuid: string, token: string, body: unknown) => Promise<unknown>;

interface Server {
  spec: PxeServerSpecT;
  names: PxeNames;
  paths: PxePaths;
  http?: http.Server;
  recentBoots: Array<{ mac: string; boot: string; at: string }>;
  reports: Array<{ token: string; at: string; report: InspectionReportT }>;
  deployReports: Array<{ token: string; at: string; report: DeployReportT }>;
}

export interface PxeServiceOptions {
  dataDir: string;
  scheme: NameScheme;
  imagesDir: string;
  log: Logger;
  onCallback?: CallbackHandler;
  /** Prepared images and config drives (GET /deploy/<token>/…). */
  deploy?: DeployFiles;
}

export class PxeService {
  private servers = new Map<string, Server>();
  onCallback?: CallbackHandler;

  constructor(private readonly o: PxeServiceOptions) {
    if (o.onCallback) this.onCallback = o.onCallback;
  }

  private dirOf(uuid: string): string {
    return join(this.o.dataDir, 'baremetal', 'pxe', uuidHex(uuid));
  }

  async apply(spec: PxeServerSpecT, signal?: AbortSignal): Promise<{ state: ReturnType<PxeService['stateOf']>; changed: boolean }> {
    checkPxeSpec(spec);
    const dir = this.dirOf(spec.pxeServerUuid);
    mkdirSync(dir, { recursive: true });
    let s = this.servers.get(spec.pxeServerUuid);
    if (!s) {
      s = { spec, names: pxeNames(spec.pxeServerUuid, this.o.scheme), paths: pxePaths(dir), recentBoots: [], reports: [], deployReports: [] };
      this.servers.set(spec.pxeServerUuid, s);
    }
    s.spec = spec;
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
    const changed = spec.running ? await this.up(s, signal) : await this.down(s);
    return { state: this.stateOf(s), changed };
  }

  /** Namespace, TFTP root, dnsmasq and HTTP as the spec says; true when something changed. */
  private async up(s: Server, signal?: AbortSignal): Promise<boolean> {
    const o = signal ? { signal } : {};
    const { namespace: ns, hostVeth } = s.names;
    let changed = false;
    checkBridge(s.spec.bridge);
    if (!netnsExists(ns)) {
      await exec('ip', ['netns', 'add', ns], o);
      changed = true;
    }
    await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], o);
    const nsSide = await execOk('ip', ['-n', ns, 'link', 'show', 'dev', PXE_IF]);
    if (!nsSide || !linkExists(hostVeth)) {
      if (linkExists(hostVeth)) await exec('ip', ['link', 'del', hostVeth], o);
      if (nsSide) await exec('ip', ['-n', ns, 'link', 'del', PXE_IF], o);
      await exec('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', PXE_IF, 'netns', ns], o);
      changed = true;
    }
    await exec('ip', ['link', 'set', hostVeth, 'master', s.spec.bridge, 'up'], o);
    await exec('sysctl', ['-q', '-w', `net.ipv6.conf.${PXE_IF}.disable_ipv6=0`], { ...o, netns: ns });
    await exec('ip', ['-n', ns, 'link', 'set', PXE_IF, 'up'], o);
    const want = `${s.spec.serverIp}/${netmaskToPrefix(s.spec.dhcpRangeNetmask)}`;
    const have = await addrsOf(ns, PXE_IF);
    for (const a of have) if (a !== want) await exec('ip', ['-n', ns, 'addr', 'del', a, 'dev', PXE_IF], o);
    if (!have.includes(want)) {
      await exec('ip', ['-n', ns, 'addr', 'add', want, 'dev', PXE_IF], o);
      changed = true;
    }
    // the RA prefix (dnsmasq's constructor: needs a global IPv6 address on the interface)
    await exec('ip', ['-n', ns, '-6', 'addr', 'replace', `${raPrefix(s.spec.pxeServerUuid)}1/64`, 'dev', PXE_IF, 'nodad'], o);
    mkdirSync(s.paths.tftpRoot, { recursive: true });
    for (const [src, name] of IPXE_FILES) if (existsSync(src) && !existsSync(join(s.paths.tftpRoot, name))) copyFileSync(src, join(s.paths.tftpRoot, name));
    const conf = renderPxeDnsmasqConf(s.spec, PXE_IF, s.paths);
    const old = existsSync(s.paths.conf) ? readFileSync(s.paths.conf, 'utf8') : '';
    if (old !== conf) {
      writeFileSync(s.paths.conf, conf);
      await stopDnsmasq(s.paths);
      changed = true;
    }
    if (findDnsmasq(s.paths) === undefined) {
      await startDnsmasq(ns, s.paths, signal);
      changed = true;
    }
    if (!s.http) {
      s.http = this.httpServer(s);
      const sock = await listenInNamespace(ns, s.spec.serverIp, s.spec.httpPort);
      await new Promise<void>((r) => s.http!.listen(sock, () => r()));
      changed = true;
    }
    return changed;
  }

  private async down(s: Server): Promise<boolean> {
    let changed = false;
    if (s.http) {
      s.http.closeAllConnections();
      await new Promise<void>((r) => s.http!.close(() => r()));
      delete s.http;
      changed = true;
    }
    if (await stopDnsmasq(s.paths)) changed = true;
    if (netnsExists(s.names.namespace)) {
      await exec('ip', ['netns', 'del', s.names.namespace]);
      changed = true;
    }
    if (linkExists(s.names.hostVeth)) await execOk('ip', ['link', 'del', s.names.hostVeth]);
    return changed;
  }

  async delete(pxeServerUuid: string): Promise<boolean> {
    const dir = this.dirOf(pxeServerUuid);
    const s = this.servers.get(pxeServerUuid) ?? { spec: undefined as never, names: pxeNames(pxeServerUuid, this.o.scheme), paths: pxePaths(dir), recentBoots: [], reports: [], deployReports: [] };
    const had = this.servers.delete(pxeServerUuid) || existsSync(dir);
    const changed = await this.down(s);
    rmSync(dir, { recursive: true, force: true });
    return had || changed;
  }

  status(pxeServerUuid: string): ReturnType<PxeService['stateOf']> | undefined {
    const s = this.servers.get(pxeServerUuid);
    return s ? this.stateOf(s) : undefined;
  }

  stateOf(s: Server): { pxeServerUuid: string; namespace: string; running: boolean; dnsmasqPid?: number; http: boolean; recentBoots: Array<{ mac: string; boot: string; at: string }>; reports: Server['reports']; deployReports: Server['deployReports'] } {
    const pid = findDnsmasq(s.paths);
    return {
      pxeServerUuid: s.spec.pxeServerUuid,
      namespace: s.names.namespace,
      running: pid !== undefined && s.http !== undefined,
      ...(pid !== undefined ? { dnsmasqPid: pid } : {}),
      http: s.http !== undefined,
      recentBoots: s.recentBoots.slice(0, 50),
      reports: s.reports.slice(0, 50),
      deployReports: s.deployReports.slice(0, 50),
    };
  }

  /** On agent start: re-apply every saved spec. */
  async recover(): Promise<void> {
    const root = join(this.o.dataDir, 'baremetal', 'pxe');
    if (!existsSync(root)) return;
    for (const d of readdirSync(root)) {
      try {
        const spec = JSON.parse(readFileSync(join(root, d, 'spec.json'), 'utf8')) as PxeServerSpecT;
        await this.apply(spec);
      } catch (e) {
        this.o.log.error({ dir: d, err: (e as Error).message }, 'cannot recover a PXE server');
      }
    }
  }

  async close(): Promise<void> {
    for (const s of this.servers.values()) {
      s.http?.closeAllConnections();
      s.http?.close();
      delete s.http;
    }
  }

  private httpServer(s: Server): http.Server {
    const srv = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
      const send = (status: number, body: string, type = 'text/plain'): void => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      const url = (req.url ?? '/').split('?')[0]!;
      try {
        if (req.method === 'GET' && url === '/boot.ipxe') return send(200, renderBootstrapIpxe(s.spec));
        const boot = /^\/boot\/([0-9a-fA-F]{2}(?:[-:][0-9a-fA-F]{2}){5})\.ipxe$/.exec(url);
        if (req.method === 'GET' && boot) {
          const mac = boot[1]!.replace(/-/g, ':').toLowerCase();
          const r = renderMachineIpxe(s.spec, mac);
          s.recentBoots.unshift({ mac, boot: r.boot, at: new Date().toISOString() });
          s.recentBoots.length = Math.min(s.recentBoots.length, 50);
          this.o.log.info({ pxeServer: s.spec.pxeServerUuid, mac, boot: r.boot }, 'PXE boot script served');
          return send(200, r.script);
        }
        const img = /^\/images\/([a-z.]+)$/.exec(url);
        if ((req.method === 'GET' || req.method === 'HEAD') && img && (PXE_IMAGES as readonly string[]).includes(img[1]!)) {
          const f = join(this.o.imagesDir, img[1]!);
          if (!existsSync(f)) return send(404, `${img[1]} is not in ${this.o.imagesDir} on this host (build it with scripts/baremetal/build-ramdisk.sh)\n`);
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(f).size });
          if (req.method === 'HEAD') return void res.end();
          createReadStream(f).pipe(res);
          return;
        }
        const dep = /^\/deploy\/([A-Za-z0-9_-]{16,128})\/(instructions|image|configdrive)$/.exec(url);
        if ((req.method === 'GET' || req.method === 'HEAD') && dep) return this.deployFile(s, dep[1]!, dep[2]!, req, res, send);
        const cb = /^\/callback\/([A-Za-z0-9_-]{16,128})$/.exec(url);
        if (req.method === 'POST' && cb) return void this.callback(s, cb[1]!, req, res);
        return send(404, 'not found\n');
      } catch (e) {
        this.o.log.error({ err: e, url: url.slice(0, 200) }, 'PXE HTTP request failed');
        return send(500, 'internal error\n');
      }
    });
    srv.headersTimeout = 10_000;
    srv.requestTimeout = 60_000;
    srv.maxConnections = 256;
    return srv;
  }

  /**
   * A deploy ramdisk's files, by its token: its instructions, the raw image, the config drive.
   * Only a machine the spec sends to 'deploy' has them; an unprepared file is a 409.
   */
  private deployFile(s: Server, token: string, what: string, req: http.IncomingMessage, res: http.ServerResponse, send: (status: number, body: string) => void): void {
    const m = s.spec.machines.find((x) => x.boot === 'deploy' && x.token === token && x.deploy);
    const files = this.o.deploy;
    if (!m?.deploy || !files) return send(404, 'unknown or expired token\n');
    if (what === 'instructions') {
      try {
        return send(200, renderDeployInstructions(s.spec, m, files.info(m.deploy.instanceUuid, m.deploy.imageUuid)));
      } catch (e) {
        return send(409, `${(e as Error).message}\n`);
      }
    }
    if (m.deploy.action !== 'deploy' || (what === 'image' && !m.deploy.imageUuid)) return send(404, 'nothing to fetch for this action\n');
    const f = what === 'image' ? files.imagePath(m.deploy.imageUuid!) : files.configDrivePath(m.deploy.instanceUuid);
    if (!existsSync(f)) return send(409, `${what} was not prepared on this host\n`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(f).size });
    if (req.method === 'HEAD') return void res.end();
    this.o.log.info({ pxeServer: s.spec.pxeServerUuid, mac: m.mac, what }, 'deploy file served');
    createReadStream(f).pipe(res);
  }

  /**
   * The default callback: a ramdisk's report, accepted once per token the spec holds (the
   * discovery token or a machine's), kept for the controller to read with pxe/status.
   */
  private keepReport(s: Server, token: string, body: unknown, reply: (status: number, body: unknown) => void): void {
    const valid = token === s.spec.discoveryToken || s.spec.machines.some((m) => m.token === token);
    if (!valid) return reply(404, { error: 'unknown or expired token' });
    if (s.spec.machines.some((m) => m.token === token && m.boot === 'deploy')) {
      if (s.deployReports.some((r) => r.token === token)) return reply(409, { error: 'this token has already reported' });
      let rep: DeployReportT;
      try {
        rep = validate(DeployReport, body, 'deploy report');
      } catch (e) {
        return reply(400, { error: (e as Error).message });
      }
      s.deployReports.unshift({ token, at: new Date().toISOString(), report: rep });
      s.deployReports.length = Math.min(s.deployReports.length, 50);
      this.o.log.info({ pxeServer: s.spec.pxeServerUuid, ok: rep.ok, step: rep.step, message: rep.message }, 'deploy report received');
      return reply(200, { ok: true });
    }
    if (s.reports.some((r) => r.token === token)) return reply(409, { error: 'this token has already reported' });
    let report: InspectionReportT;
    try {
      report = validate(InspectionReport, body, 'inspection report');
    } catch (e) {
      return reply(400, { error: (e as Error).message });
    }
    s.reports.unshift({ token, at: new Date().toISOString(), report });
    s.reports.length = Math.min(s.reports.length, 50);
    this.o.log.info({ pxeServer: s.spec.pxeServerUuid, cpus: report.cpuNum, nics: report.nics.length }, 'inspection report received');
    reply(200, { ok: true });
  }

  private callback(s: Server, token: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const reply = (status: number, body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CALLBACK_BYTES) {
        reply(413, { error: 'body too large' });
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_CALLBACK_BYTES) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      } catch {
        return reply(400, { error: 'body is not JSON' });
      }
      if (!this.onCallback) return this.keepReport(s, token, body, reply);
      this.onCallback(s.spec.pxeServerUuid, token, body).then(
        (r) => reply(200, r ?? {}),
        (e: unknown) => {
          const err = TStackError.from(e);
          reply(err.code === 'NOT_FOUND' ? 404 : err.code === 'INVALID_ARGUMENT' ? 400 : 500, { error: err.message });
        },
      );
    });
  }
}
