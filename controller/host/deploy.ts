// Deploy the agents of the controller's own version to a host over SSH, start them and connect:
//   ssh (typed errors) → OS + arch + virtualization + node checks → install the package under
//   <installRoot>/<version> unless that version is there (upload by sftp, unpack into a staging
//   dir, scripts/setup --os-only, npm ci --omit=dev unless node_modules are bundled, marker, swap)
//   → authorize the controller's SSH key → fresh token + config per agent (0600) → start
//   (systemd units, or direct background start with pid files) → wait for GET /health with the
//   expected version → connect (hostUuid, controllerUrl, event token) → kvmagent host/facts.
// Every remote command is an argument array of validated values; the two shell snippets below
// are constants that take all values as positional parameters.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { arch as localArch } from 'node:os';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { PROTOCOL_VERSION, common } from '../../shared/protocol/index.js';
import * as kvm from '../../shared/protocol/kvm.js';
import type { ResponseOf } from '../../shared/protocol/command.js';
import type { AgentClient } from '../agent-client/client.js';
import type { BuiltPackage } from './package.js';
import { SshSession, type SshTarget } from './ssh.js';
import {
  AGENTS,
  agentMain,
  checkHost,
  checkLayout,
  checkOs,
  checkPort,
  checkUser,
  chooseVirtType,
  configPath,
  installedMarker,
  logPath,
  nodeMajor,
  parseOsRelease,
  pidPath,
  renderAgentConfig,
  renderSystemdUnit,
  tokenPath,
  unitName,
  versionDir,
  type AgentName,
  type HostLayout,
  type OsCheck,
} from './render.js';

const log = logger('host-deploy');

/** Start an agent in the background, detached from the SSH session; $! goes to the pid file. */
export const START_SCRIPT = 'log=$1; pidf=$2; shift 2; setsid "$@" >>"$log" 2>&1 </dev/null & echo $! >"$pidf"';
/** Stop the agent of a pid file, but only if that pid still runs our command line ($2 is in it). */
export const STOP_SCRIPT =
  'pidf=$1; pat=$2; [ -f "$pidf" ] || exit 0; pid=$(cat "$pidf"); case "$pid" in ""|*[!0-9]*) rm -f "$pidf"; exit 0;; esac; ' +
  'if [ -r "/proc/$pid/cmdline" ] && tr "\\000" " " <"/proc/$pid/cmdline" | grep -qF -- "$pat"; then kill "$pid" 2>/dev/null; ' +
  'i=0; while [ $i -lt 50 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done; kill -9 "$pid" 2>/dev/null; fi; rm -f "$pidf"; exit 0';
/**
 * Everything the deploy needs to know about a host, in one SSH round trip: key=value lines, then the
 * os-release file after a separator. $1 is the install marker of the version being deployed.
 */
export const PROBE_SCRIPT =
  'printf "arch=%s\\n" "$(uname -m)"; printf "kernel=%s\\n" "$(uname -r)"; ' +
  'if [ -c /dev/kvm ]; then echo kvm=1; else echo kvm=0; fi; ' +
  'if grep -qE "^flags.*\\b(vmx|svm)\\b" /proc/cpuinfo 2>/dev/null; then echo vmx=1; else echo vmx=0; fi; ' +
  'if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi; ' +
  'printf "machineId=%s\\n" "$(cat /etc/machine-id 2>/dev/null)"; ' +
  'printf "node=%s\\n" "$(node --version 2>/dev/null)"; printf "nodePath=%s\\n" "$(command -v node 2>/dev/null)"; ' +
  'printf "marker=%s\\n" "$(tr -d "\\n" 2>/dev/null <"$1")"; echo "--- os-release"; cat /etc/os-release';

export interface HostProbe {
  arch: string;
  kernel: string;
  kvmDevice: boolean;
  cpuVirtFlag: boolean;
  systemd: boolean;
  machineId: string;
  nodeVersion: string;
  nodePath: string;
  marker: string;
  osRelease: string;
}

/** Parse PROBE_SCRIPT's output (pure). */
export function parseProbe(out: string): HostProbe {
  const sep = out.indexOf('--- os-release\n');
  const head = sep < 0 ? out : out.slice(0, sep);
  const kv = new Map<string, string>();
  for (const line of head.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const v = (k: string): string => kv.get(k) ?? '';
  return {
    arch: v('arch'),
    kernel: v('kernel'),
    kvmDevice: v('kvm') === '1',
    cpuVirtFlag: v('vmx') === '1',
    systemd: v('systemd') === '1',
    machineId: v('machineId'),
    nodeVersion: v('node'),
    nodePath: v('nodePath'),
    marker: v('marker'),
    osRelease: sep < 0 ? '' : out.slice(sep + '--- os-release\n'.length),
  };
}

/** Add a public key line to the login user's authorized_keys once. */
export const AUTHORIZE_SCRIPT =
  'umask 077; f="$HOME/.ssh/authorized_keys"; mkdir -p "$HOME/.ssh" && touch "$f" && { grep -qxF -- "$1" "$f" || { ' +
  // a file whose last line has no newline would otherwise get the key glued onto that line
  'if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then printf "\\n" >>"$f"; fi; printf "%s\\n" "$1" >>"$f"; }; }';

const PUBKEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._:+-]{1,128})?$/;

export interface DeployRequest {
  hostUuid: string;
  managementIp: string;
  sshPort: number;
  username: string;
  password?: string;
  privateKey?: string;
  /** Known SSH host key fingerprint (reconnects): a different key is refused. */
  expectedHostKey?: string;
  virtType?: 'kvm' | 'qemu';
  /** Ports per agent. */
  ports: Record<AgentName, number>;
  /** Address the agents listen on (default 0.0.0.0). */
  listenHost?: string;
  /** URL the agents post events to. */
  controllerUrl: string;
  /** Bearer token the agents use for POST /v1/agent-events (one per host). */
  eventToken: string;
  /** An OpenSSH public key line to add to the login user's authorized_keys (the controller's). */
  authorizeKey?: string;
  /** Reinstall even when the version is installed. */
  force?: boolean;
  /** Skip the Debian 12 check (other distributions at your own risk). */
  allowUnsupportedOs?: boolean;
  /**
   * Configure and (re)start only these agents; the others keep running with their tokens
   * (`keep`), e.g. when only kvmagent died, so that a storage download in flight survives.
   */
  only?: AgentName[];
  keep?: Partial<Record<AgentName, DeployedAgent>>;
}

export interface DeployConfig {
  layout: HostLayout;
  pkg: BuiltPackage;
  agentClient: AgentClient;
  logLevel?: string;
  /** Per agent, how long to wait for GET /health (default 90 s). */
  healthTimeoutMs?: number;
  /** Upload the controller's node binary when the host has no node ≥ 20 (default true). */
  shipNode?: boolean;
  /** Agent-specific config settings. */
  agentExtra?: Partial<Record<AgentName, Record<string, string | number | boolean>>>;
  /** Timeout of scripts/setup --os-only (default 30 min) and npm ci (default 20 min). */
  setupTimeoutMs?: number;
  npmTimeoutMs?: number;
  progress?: (percent: number, message: string) => void;
}

export interface DeployedAgent {
  url: string;
  port: number;
  token: string;
  version: string;
  bootId: string;
  startedAt: string;
}

export interface DeployResult {
  sshHostKey: string;
  privilege: string;
  os: OsCheck;
  arch: string;
  kernel: string;
  kvmDevice: boolean;
  cpuVirtFlag: boolean;
  virtType: 'kvm' | 'qemu';
  virtNote?: string;
  version: string;
  /** 'installed' (this deploy unpacked it), 'present' (the version was there), 'same-tree' (the controller's own tree). */
  install: 'installed' | 'present' | 'same-tree';
  serviceManager: 'systemd' | 'direct';
  nodePath: string;
  bootId: string;
  agents: Record<AgentName, DeployedAgent>;
  facts?: ResponseOf<typeof kvm.HostFacts>;
}

const nodeArch = (): string => ({ x64: 'x86_64', arm64: 'aarch64' })[localArch() as 'x64'] ?? localArch();

function localMachineId(): string {
  try {
    return readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    return '';
  }
}

function validate(req: DeployRequest): void {
  checkHost(req.managementIp);
  checkPort('sshPort', req.sshPort);
  checkUser(req.username);
  for (const a of AGENTS) checkPort(`ports.${a}`, req.ports[a]);
  if (new Set(AGENTS.map((a) => req.ports[a])).size !== AGENTS.length) throw new TStackError('INVALID_ARGUMENT', 'the three agents need three different ports', { field: 'ports' });
  if (req.authorizeKey !== undefined && !PUBKEY_RE.test(req.authorizeKey)) throw new TStackError('INVALID_ARGUMENT', 'authorizeKey: not an OpenSSH public key line', { field: 'authorizeKey' });
  if (!/^[A-Za-z0-9_-]{16,128}$/.test(req.eventToken)) throw new TStackError('INVALID_ARGUMENT', 'eventToken: 16-128 url-safe characters', { field: 'eventToken' });
}

/** The full add/reconnect deployment. Throws typed errors; on failure agents it started are stopped. */
export async function deployHost(req: DeployRequest, cfg: DeployConfig): Promise<DeployResult> {
  validate(req);
  const layout = checkLayout(cfg.layout);
  const version = cfg.pkg.version;
  const vdir = versionDir(layout, version);
  // each step's duration goes to the log: a slow deploy shows which step was slow
  let stepAt = Date.now();
  let step = '';
  const progress = (pct: number, msg: string): void => {
    if (step) log.info({ host: req.managementIp, step, ms: Date.now() - stepAt }, 'deploy step done');
    step = msg;
    stepAt = Date.now();
    cfg.progress?.(pct, msg);
  };
  const target: SshTarget = { host: req.managementIp, port: req.sshPort, username: req.username };
  if (req.password) target.password = req.password;
  if (req.privateKey) target.privateKey = req.privateKey;
  if (req.expectedHostKey) target.expectedHostKey = req.expectedHostKey;

  progress(5, `connecting to ${req.username}@${req.managementIp}:${req.sshPort}`);
  const ssh = await SshSession.open(target);
  let started = false;
  let tmp: string | undefined;
  try {
    // --- controller key first (reconnects log in with it; the password is never stored), so that a
    // deploy interrupted later can still be finished by a reconnect
    if (req.authorizeKey) await ssh.run(['sh', '-c', AUTHORIZE_SCRIPT, 'sh', req.authorizeKey]);

    // --- checks
    progress(10, 'checking the operating system');
    const probe = parseProbe((await ssh.run(['sh', '-c', PROBE_SCRIPT, 'sh', installedMarker(layout, version)], { timeoutMs: 60_000 })).stdout);
    const os = checkOs(parseOsRelease(probe.osRelease));
    if (!os.supported && !req.allowUnsupportedOs) {
      throw new TStackError('HOST_OS_UNSUPPORTED', `${req.managementIp} runs ${os.prettyName}; tstack hosts need Debian 12 (bookworm)`, { id: os.id, versionId: os.versionId });
    }
    const { arch, kernel, kvmDevice, cpuVirtFlag } = probe;
    const virt = chooseVirtType(req.virtType, kvmDevice);
    if (virt.note) log.warn({ host: req.managementIp }, virt.note);
    const remoteMachineId = probe.machineId;
    const sameTree = remoteMachineId !== '' && remoteMachineId === localMachineId() && resolve(cfg.pkg.root) === vdir;
    if (cfg.pkg.bundled && arch !== nodeArch() && !sameTree) {
      throw new TStackError('HOST_ARCH_MISMATCH', `${req.managementIp} is ${arch}, the controller's bundled agent package is built for ${nodeArch()}`, { arch });
    }

    // --- node
    const shippedNode = `${vdir}/bin/node`;
    const hostNode = probe.nodeVersion;
    let nodePath = '';
    if (nodeMajor(hostNode) >= 20) nodePath = probe.nodePath || '/usr/bin/node';
    const needNode = nodePath === '';
    if (needNode && (cfg.shipNode === false || arch !== nodeArch() || !cfg.pkg.bundled)) {
      throw new TStackError('HOST_NODE_MISSING', `${req.managementIp} has no Node.js ≥ 20 (found ${hostNode || 'none'}); install nodejs 20 and npm on the host, or deploy a bundled package (the controller then ships its own node)`, { found: hostNode });
    }
    if (needNode) nodePath = shippedNode;

    // --- install
    const marker = probe.marker;
    let installedVersion = '';
    try {
      installedVersion = marker ? String((JSON.parse(marker) as { version?: string }).version ?? '') : '';
    } catch {
      installedVersion = '';
    }
    let install: DeployResult['install'] = 'present';
    if (sameTree) {
      install = 'same-tree';
      log.info({ host: req.managementIp, dir: vdir }, 'host is this machine and the install dir is the controller tree: not touching it');
    } else if (installedVersion !== version || req.force || (needNode && !(await ssh.ok(['test', '-x', shippedNode])))) {
      install = 'installed';
      tmp = await ssh.mkTemp();
      progress(20, `uploading tstack ${version} (${Math.round(cfg.pkg.size / 1048576)} MiB)`);
      await ssh.put(cfg.pkg.path, `${tmp}/tstack.tar.gz`);
      const staging = `${vdir}.staging-${randomBytes(4).toString('hex')}`;
      progress(35, 'unpacking');
      try {
        await ssh.run(['sh', '-c', 'mkdir -p -m 0755 -- "$1" && mkdir -m 0755 -- "$2" && tar -xzf "$3" -C "$2" --no-same-owner', 'sh', layout.installRoot, staging, `${tmp}/tstack.tar.gz`], { root: true, timeoutMs: 10 * 60_000 });
        if (needNode) {
          progress(40, 'uploading node');
          await ssh.put(process.execPath, `${tmp}/node`, 0o700);
          await ssh.run(['install', '-D', '-m', '0755', `${tmp}/node`, `${staging}/bin/node`], { root: true });
        }
        progress(45, 'installing OS packages (scripts/setup --os-only)');
        await ssh.run([`${staging}/scripts/setup`, '--os-only'], { root: true, timeoutMs: cfg.setupTimeoutMs ?? 30 * 60_000, errorCode: 'HOST_SETUP_FAILED' });
        if (!cfg.pkg.bundled) {
          progress(60, 'installing npm dependencies (npm ci --omit=dev)');
          await ssh.run(['env', '-C', staging, 'npm', 'ci', '--omit=dev', '--no-audit', '--no-fund', '--loglevel=error'], { root: true, timeoutMs: cfg.npmTimeoutMs ?? 20 * 60_000, errorCode: 'HOST_SETUP_FAILED' });
        }
        await ssh.installFile(`${staging}/.tstack-installed`, JSON.stringify({ version, sha256: cfg.pkg.sha256, installedAt: new Date().toISOString() }) + '\n', 0o644, tmp);
        // swap in: the old tree (an incomplete or forced one) goes away only after the new one is in place
        const old = `${vdir}.old-${randomBytes(4).toString('hex')}`;
        await ssh.run(['sh', '-c', 'if [ -e "$1" ]; then mv -- "$1" "$2"; fi; mv -- "$3" "$1"', 'sh', vdir, old, staging], { root: true });
        await ssh.run(['rm', '-rf', '--', old], { root: true, timeoutMs: 5 * 60_000 });
      } catch (e) {
        await ssh.run(['rm', '-rf', '--', staging], { root: true, timeoutMs: 5 * 60_000 }).catch(() => undefined);
        throw e;
      }
    } else {
      log.info({ host: req.managementIp, version }, 'version already installed: skipping upload, setup and npm ci');
    }

    // --- configs, tokens, start
    const targets: readonly AgentName[] = req.only?.length ? AGENTS.filter((a) => req.only!.includes(a)) : AGENTS;
    for (const a of AGENTS) {
      if (!targets.includes(a) && !req.keep?.[a]) throw new TStackError('INVALID_ARGUMENT', `only: ${a} is neither restarted nor kept`, { field: 'only' });
    }
    progress(75, `writing agent configs and starting ${targets.join(', ')}`);
    tmp ??= await ssh.mkTemp();
    const systemd = probe.systemd;
    await ssh.run(['sh', '-c', 'mkdir -p -m 0700 -- "$1" && shift && mkdir -p -- "$@"', 'sh', layout.etcDir, layout.runDir, layout.logDir, ...AGENTS.map((a) => `${layout.dataDir}/${a}`)], { root: true });
    const tokens = {} as Record<AgentName, string>;
    const files: Array<{ dest: string; content: string; mode: number }> = [];
    for (const a of targets) {
      tokens[a] = randomBytes(32).toString('hex');
      const conf = renderAgentConfig({
        agent: a,
        listenHost: req.listenHost ?? '0.0.0.0',
        port: req.ports[a],
        layout,
        controllerUrl: req.controllerUrl,
        hostUuid: req.hostUuid,
        version,
        logLevel: cfg.logLevel ?? 'info',
        extra: cfg.agentExtra?.[a] ?? {},
      });
      files.push({ dest: tokenPath(layout, a), content: tokens[a] + '\n', mode: 0o600 }, { dest: configPath(layout, a), content: conf, mode: 0o600 });
      if (systemd) files.push({ dest: `${layout.unitDir}/${unitName(a)}`, content: renderSystemdUnit({ agent: a, nodePath, layout, version }), mode: 0o644 });
    }
    await ssh.installFiles(files, tmp);
    started = true;
    if (systemd) {
      await ssh.run(['systemctl', 'daemon-reload'], { root: true });
      for (const a of targets) {
        await ssh.run(['systemctl', 'enable', unitName(a)], { root: true });
        await ssh.run(['systemctl', 'restart', unitName(a)], { root: true });
      }
    } else {
      // stopping waits for each agent to exit: do it for all at once (SSH channels run in parallel)
      await Promise.all(targets.map((a) => ssh.run(['sh', '-c', STOP_SCRIPT, 'sh', pidPath(layout, a), configPath(layout, a)], { root: true, timeoutMs: 30_000 })));
      await Promise.all(
        targets.map((a) => ssh.run(['sh', '-c', START_SCRIPT, 'sh', logPath(layout, a), pidPath(layout, a), nodePath, agentMain(layout, version, a), '--config', configPath(layout, a)], { root: true, timeoutMs: 30_000 })),
      );
    }

    // --- health, connect, facts
    progress(85, 'waiting for the agents to answer');
    const agents = {} as Record<AgentName, DeployedAgent>;
    for (const a of AGENTS) if (!targets.includes(a)) agents[a] = req.keep![a]!;
    const agentHost = req.managementIp;
    await Promise.all(
      targets.map(async (a) => {
        const url = `http://${agentHost}:${req.ports[a]}`;
        try {
          await waitHealth(url, version, cfg.healthTimeoutMs ?? 90_000);
        } catch (e) {
          const tail = systemd
            ? (await ssh.run(['journalctl', '-u', unitName(a), '-n', '30', '--no-pager'], { root: true, okCodes: [0, 1] }).catch(() => ({ stdout: '' }))).stdout
            : (await ssh.run(['tail', '-n', '30', logPath(layout, a)], { root: true, okCodes: [0, 1] }).catch(() => ({ stdout: '' }))).stdout;
          throw new TStackError('HOST_AGENT_START_FAILED', `${a} on ${req.managementIp} did not come up: ${(e as Error).message}`, { agent: a, url, log: tail.slice(-3000) });
        }
        const ep = { url, token: tokens[a] };
        const info = await cfg.agentClient.call(common.Connect, ep, { hostUuid: req.hostUuid, controllerUrl: req.controllerUrl, eventToken: req.eventToken }, { timeoutMs: 30_000 });
        if (info.version !== version || info.protocolVersion !== PROTOCOL_VERSION) {
          throw new TStackError('HOST_AGENT_VERSION_MISMATCH', `${a} on ${req.managementIp} runs ${info.version} (protocol ${info.protocolVersion}); the controller is ${version} (protocol ${PROTOCOL_VERSION})`, { agent: a });
        }
        agents[a] = { url, port: req.ports[a], token: tokens[a], version: info.version, bootId: info.bootId, startedAt: info.startedAt };
      }),
    );
    const result: DeployResult = {
      sshHostKey: ssh.hostKey,
      privilege: ssh.privilege || 'root',
      os,
      arch,
      kernel,
      kvmDevice,
      cpuVirtFlag,
      virtType: virt.virtType,
      version,
      install,
      serviceManager: systemd ? 'systemd' : 'direct',
      nodePath,
      bootId: agents.kvmagent.bootId,
      agents,
    };
    if (virt.note) result.virtNote = virt.note;
    if ('HostFacts' in kvm && kvm.HostFacts) {
      progress(95, 'reading host facts');
      result.facts = await cfg.agentClient.call(kvm.HostFacts, { url: agents.kvmagent.url, token: agents.kvmagent.token }, {}, { timeoutMs: 70_000 });
    }
    progress(100, 'connected');
    return result;
  } catch (e) {
    if (started) await stopAgentsWith(ssh, layout, req.only).catch((x: unknown) => log.warn({ err: (x as Error).message }, 'could not stop agents after a failed deploy'));
    throw e;
  } finally {
    if (tmp) await ssh.run(['rm', '-rf', '--', tmp]).catch(() => undefined);
    ssh.close();
  }
}

async function stopAgentsWith(ssh: SshSession, layout: HostLayout, only?: AgentName[]): Promise<void> {
  const which = only?.length ? AGENTS.filter((a) => only.includes(a)) : AGENTS;
  if (await ssh.ok(['test', '-d', '/run/systemd/system'])) {
    for (const a of which) await ssh.run(['systemctl', 'stop', unitName(a)], { root: true, okCodes: [0, 1, 5] });
    return;
  }
  await Promise.all(which.map((a) => ssh.run(['sh', '-c', STOP_SCRIPT, 'sh', pidPath(layout, a), configPath(layout, a)], { root: true, timeoutMs: 30_000 })));
}

/** Stop the agents of a host over SSH (host deletion; tests). */
export async function stopAgents(target: SshTarget, layout: HostLayout): Promise<void> {
  const ssh = await SshSession.open(target);
  try {
    await stopAgentsWith(ssh, checkLayout(layout));
  } finally {
    ssh.close();
  }
}

/** Poll GET /health until it answers ok with `version`. */
export async function waitHealth(url: string, version: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(3_000) });
      const b = (await res.json().catch(() => ({}))) as { status?: string; version?: string };
      if (res.ok && b.status === 'ok' && b.version === version) return;
      last = res.ok ? `answers version ${b.version ?? '?'}, expected ${version}` : `HTTP ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new TStackError('TIMEOUT', `GET ${url}/health: ${last} after ${Math.round(timeoutMs / 1000)} s`);
}
