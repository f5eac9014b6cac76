// Pure parts of deploying agents to a host: the on-host layout, validation of every value that
// ends up in a remote command or file, agent config files, systemd units, and parsing of what
// the host tells us (os-release, versions). No I/O here, so all of it is unit-tested.
import { stringify } from 'yaml';
import { TStackError, invalid } from '../../shared/errors.js';

export const AGENTS = ['kvmagent', 'storageagent', 'vrouteragent'] as const;
export type AgentName = (typeof AGENTS)[number];
export const DEFAULT_AGENT_PORTS: Record<AgentName, number> = { kvmagent: 7070, storageagent: 7171, vrouteragent: 7272 };

/** Where things live on a host. Defaults follow DESIGN.md; tests point them at temp dirs. */
export interface HostLayout {
  /** Versions are unpacked under <installRoot>/<version>. */
  installRoot: string;
  /** Agent configs and tokens: <etcDir>/<agent>.yaml, <etcDir>/<agent>.token. */
  etcDir: string;
  /** Agent data: <dataDir>/<agent>. */
  dataDir: string;
  /** Pid files of agents started without systemd. */
  runDir: string;
  /** Logs of agents started without systemd. */
  logDir: string;
  /** Where systemd units are written (when systemd runs). */
  unitDir: string;
}

export const DEFAULT_LAYOUT: HostLayout = {
  installRoot: '/opt/tstack',
  etcDir: '/etc/tstack',
  dataDir: '/var/lib/tstack',
  runDir: '/run/tstack',
  logDir: '/var/log/tstack',
  unitDir: '/etc/systemd/system',
};

const PATH_RE = /^\/[A-Za-z0-9_./-]*$/;
const VERSION_RE = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;
const USER_RE = /^[a-z_][a-z0-9_.-]{0,31}$/;
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const UUID_RE = /^[0-9a-fA-F-]{8,64}$/;

/** An absolute path without shell-, unit- or YAML-special characters and without '..'. */
export function checkPath(field: string, p: string): string {
  if (typeof p !== 'string' || !PATH_RE.test(p) || p.split('/').includes('..') || p.length > 512) {
    throw invalid(field, `expected an absolute path of letters, digits and _ . / - (got ${JSON.stringify(p)})`);
  }
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

export function checkVersion(v: string): string {
  if (!VERSION_RE.test(v)) throw invalid('version', `bad version ${JSON.stringify(v)}`);
  return v;
}

export function checkUser(u: string): string {
  if (!USER_RE.test(u)) throw invalid('username', `expected a Unix user name, got ${JSON.stringify(u)}`);
  return u;
}

export function checkHost(h: string): string {
  if (!IPV4_RE.test(h) && (!HOSTNAME_RE.test(h) || /^[0-9.]+$/.test(h))) throw invalid('managementIp', `expected an IPv4 address or a host name, got ${JSON.stringify(h)}`);
  return h;
}

export function checkPort(field: string, p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalid(field, `expected a TCP port 1-65535, got ${String(p)}`);
  return p;
}

export function checkLayout(l: HostLayout): HostLayout {
  return {
    installRoot: checkPath('layout.installRoot', l.installRoot),
    etcDir: checkPath('layout.etcDir', l.etcDir),
    dataDir: checkPath('layout.dataDir', l.dataDir),
    runDir: checkPath('layout.runDir', l.runDir),
    logDir: checkPath('layout.logDir', l.logDir),
    unitDir: checkPath('layout.unitDir', l.unitDir),
  };
}

export const versionDir = (l: HostLayout, version: string): string => `${l.installRoot}/${checkVersion(version)}`;
export const configPath = (l: HostLayout, a: AgentName): string => `${l.etcDir}/${a}.yaml`;
export const tokenPath = (l: HostLayout, a: AgentName): string => `${l.etcDir}/${a}.token`;
export const pidPath = (l: HostLayout, a: AgentName): string => `${l.runDir}/${a}.pid`;
export const logPath = (l: HostLayout, a: AgentName): string => `${l.logDir}/${a}.log`;
export const unitName = (a: AgentName): string => `tstack-${a}.service`;
/** Marker written last by an install: its presence means the version is complete. */
export const installedMarker = (l: HostLayout, version: string): string => `${versionDir(l, version)}/.tstack-installed`;
export const agentMain = (l: HostLayout, version: string, a: AgentName): string => `${versionDir(l, version)}/dist/${a}/main.js`;

export interface AgentConfigInput {
  agent: AgentName;
  listenHost: string;
  port: number;
  layout: HostLayout;
  controllerUrl: string;
  hostUuid: string;
  version: string;
  logLevel?: string;
  /** Agent-specific settings (e.g. kvmagent libvirtUri, vrouteragent namePrefix). */
  extra?: Record<string, string | number | boolean>;
}

/** The YAML config of one agent (flags of shared/daemon.ts, camelCase). */
export function renderAgentConfig(i: AgentConfigInput): string {
  checkPort('port', i.port);
  if (!IPV4_RE.test(i.listenHost) && i.listenHost !== '::') throw invalid('listenHost', `expected an IPv4 address, got ${i.listenHost}`);
  if (!/^https?:\/\/[A-Za-z0-9.:[\]-]+(\/[A-Za-z0-9._~/-]*)?$/.test(i.controllerUrl)) throw invalid('controllerUrl', `expected http(s)://host:port, got ${i.controllerUrl}`);
  if (!UUID_RE.test(i.hostUuid)) throw invalid('hostUuid', 'bad uuid');
  const listen = i.listenHost === '::' ? `[::]:${i.port}` : `${i.listenHost}:${i.port}`;
  const doc: Record<string, unknown> = {
    listen,
    dataDir: `${i.layout.dataDir}/${i.agent}`,
    tokenFile: tokenPath(i.layout, i.agent),
    controllerUrl: i.controllerUrl,
    logLevel: i.logLevel ?? 'info',
  };
  for (const [k, v] of Object.entries(i.extra ?? {})) {
    if (!/^[a-z][A-Za-z0-9]*$/.test(k)) throw invalid(`extra.${k}`, 'setting names are camelCase');
    if (k in doc) throw invalid(`extra.${k}`, 'may not override a managed setting');
    doc[k] = v;
  }
  const head = `# tstack ${checkVersion(i.version)} ${i.agent} on host ${i.hostUuid}\n# Written by tstack-controller; a reconnect rewrites it.\n`;
  return head + stringify(doc);
}

export interface UnitInput {
  agent: AgentName;
  nodePath: string;
  layout: HostLayout;
  version: string;
}

/** A systemd unit for one agent (where systemd runs). */
export function renderSystemdUnit(u: UnitInput): string {
  const node = checkPath('nodePath', u.nodePath);
  const main = agentMain(u.layout, u.version, u.agent);
  const after = u.agent === 'kvmagent' ? 'network-online.target libvirtd.service' : 'network-online.target';
  return [
    '[Unit]',
    `Description=tstack ${u.agent} ${u.version}`,
    `After=${after}`,
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${node} ${main} --config ${configPath(u.layout, u.agent)}`,
    'Restart=on-failure',
    'RestartSec=3',
    'KillMode=process',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** Parse /etc/os-release (KEY=value, values optionally quoted). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1).replace(/\\(["$`\\])/g, '$1');
    out[m[1]!] = v;
  }
  return out;
}

export interface OsCheck {
  id: string;
  versionId: string;
  prettyName: string;
  supported: boolean;
}

/** tstack hosts run Debian 12 (what scripts/setup installs packages for). */
export function checkOs(osRelease: Record<string, string>): OsCheck {
  const id = osRelease.ID ?? 'unknown';
  const versionId = osRelease.VERSION_ID ?? '';
  return { id, versionId, prettyName: osRelease.PRETTY_NAME ?? `${id} ${versionId}`, supported: id === 'debian' && versionId === '12' };
}

/** "v20.11.1" → 20 (NaN if not a node version). */
export function nodeMajor(v: string): number {
  const m = /^v?(\d+)\.\d+\.\d+/.exec(v.trim());
  return m ? Number(m[1]) : NaN;
}

/** Which hypervisor to use: kvm when asked and /dev/kvm is there, else qemu (TCG), with the reason. */
export function chooseVirtType(requested: 'kvm' | 'qemu' | undefined, kvmDevice: boolean): { virtType: 'kvm' | 'qemu'; note?: string } {
  if (requested === 'qemu') return { virtType: 'qemu' };
  if (kvmDevice) return { virtType: 'kvm' };
  return { virtType: 'qemu', note: '/dev/kvm is absent on the host (no hardware virtualization or kvm module not loaded): falling back to qemu (TCG emulation, slow)' };
}

/** Map an ssh2 / socket error to a typed host error with advice. */
export function sshError(e: unknown, target: string): TStackError {
  if (e instanceof TStackError) return e;
  const err = e as { message?: string; code?: string; level?: string };
  const msg = err.message ?? String(e);
  const code = err.code ?? '';
  if (err.level === 'client-authentication' || /authentication methods failed/i.test(msg)) {
    return new TStackError('HOST_AUTH_FAILED', `SSH login to ${target} failed: wrong user name, password or key (the server refused every method offered)`, { target });
  }
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET'].includes(code) || err.level === 'client-timeout' || /timed out|handshake/i.test(msg)) {
    return new TStackError('HOST_UNREACHABLE', `cannot reach SSH on ${target}: ${msg} (check the address, the SSH port and firewalls between the controller and the host)`, { target, cause: code || msg });
  }
  return new TStackError('HOST_SSH_ERROR', `SSH to ${target} failed: ${msg}`, { target, cause: code || msg });
}
