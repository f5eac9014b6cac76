// Common start-up of every tstack daemon: flags (--config, --listen, --data-dir, --token-file,
// --controller-url, --log-level), a JSON/YAML config file that flags override, the token file
// (created 0600 with a random secret if absent), and clean shutdown on SIGINT/SIGTERM.
import { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { setLogLevel, logger } from './log.js';
import { tstackVersion } from './sysinfo.js';

export interface DaemonConfig {
  listenHost: string;
  listenPort: number;
  dataDir: string;
  tokenFile: string;
  token: string;
  controllerUrl?: string;
  logLevel: string;
  /** Everything else in the config file, for the daemon's own settings. */
  extra: Record<string, unknown>;
}

export interface DaemonDefaults {
  name: string;
  port: number;
  host?: string;
  description: string;
  /** Extra flags: [flags, description, default]. */
  options?: Array<[string, string, string?]>;
}

export function parseListen(s: string, defPort: number): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(s.trim());
  if (!m) throw new Error(`--listen: expected host:port, got ${s}`);
  const host = m[1] ?? (m[2] || '0.0.0.0');
  const port = m[3] !== undefined ? Number(m[3]) : defPort;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--listen: bad port in ${s}`);
  return { host, port };
}

/** Read the token file, creating it (0600, 32 random bytes hex) when absent. */
export function ensureToken(file: string): string {
  if (existsSync(file)) {
    // a secret readable by others is tightened, not trusted as is
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    const t = readFileSync(file, 'utf8').trim();
    if (t.length < 16) throw new Error(`${file}: token is shorter than 16 characters`);
    return t;
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const t = randomBytes(32).toString('hex');
  writeFileSync(file, t + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  return t;
}

export function loadConfigFile(file: string): Record<string, unknown> {
  const text = readFileSync(file, 'utf8');
  const v = file.endsWith('.json') ? (JSON.parse(text) as unknown) : (parseYaml(text) as unknown);
  if (v === null || v === undefined) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: expected a mapping of settings`);
  return v as Record<string, unknown>;
}

const camel = (s: string): string => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export function parseDaemonArgs(d: DaemonDefaults, argv = process.argv): DaemonConfig {
  const program = new Command(d.name)
    .description(d.description)
    .version(tstackVersion())
    .option('--config <file>', 'config file (YAML or JSON); flags override it')
    .option('--listen <host:port>', `listen address (default ${d.host ?? '0.0.0.0'}:${d.port})`)
    .option('--data-dir <dir>', 'data directory (default /var/lib/tstack)')
    .option('--token-file <file>', 'shared secret file; created 0600 if absent')
    .option('--controller-url <url>', 'controller URL for events')
    .option('--log-level <level>', 'trace|debug|info|warn|error');
  for (const [flags, desc, def] of d.options ?? []) program.option(flags, desc, def);
  program.parse(argv);
  const o = program.opts<Record<string, string | undefined>>();
  const file = o.config ? loadConfigFile(o.config) : {};
  // flags win over the file; the file may spell keys camelCase (dataDir) or like the flags (data-dir)
  const fromFile = (k: string): string | undefined => {
    const v = file[k] ?? file[camel(k)] ?? file[kebab(k)];
    return v === undefined || v === null ? undefined : String(v);
  };
  const pick = (k: string): string | undefined => o[k] ?? fromFile(k);
  const { host, port } = parseListen(pick('listen') ?? `${d.host ?? '0.0.0.0'}:${d.port}`, d.port);
  const dataDir = pick('dataDir') ?? '/var/lib/tstack';
  const tokenFile = pick('tokenFile') ?? `/etc/tstack/${d.name.replace(/^tstack-/, '')}.token`;
  const logLevel = pick('logLevel') ?? process.env.TSTACK_LOG_LEVEL ?? 'info';
  setLogLevel(logLevel);
  mkdirSync(dataDir, { recursive: true });
  const cfg: DaemonConfig = {
    listenHost: host,
    listenPort: port,
    dataDir,
    tokenFile,
    token: ensureToken(tokenFile),
    logLevel,
    extra: { ...file, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) },
  };
  const cu = pick('controllerUrl');
  if (cu) cfg.controllerUrl = cu;
  return cfg;
}

/** Close cleanly on SIGINT/SIGTERM; exit non-zero on a start-up failure. */
export function runDaemon(name: string, main: () => Promise<() => Promise<void>>): void {
  const log = logger(name);
  main().then(
    (close) => {
      const stop = (sig: string): void => {
        log.info({ sig }, 'shutting down');
        close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
        setTimeout(() => process.exit(1), 10_000).unref();
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    },
    (e: unknown) => {
      log.fatal({ err: e }, 'failed to start');
      process.stderr.write(`${name}: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
