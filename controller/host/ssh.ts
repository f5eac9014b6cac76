// SSH to a host with ssh2: connect with timeouts and typed errors (HOST_AUTH_FAILED,
// HOST_UNREACHABLE, HOST_KEY_MISMATCH, HOST_NOT_PRIVILEGED), run commands given as argument
// arrays (quoted by quote.ts, the only shell-string builder), run them as root (directly,
// or through sudo without or with the login password), and copy files with sftp.
import { createHash, randomBytes } from 'node:crypto';
import { Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { shJoin } from './quote.js';
import { sshError } from './render.js';

const log = logger('host-ssh');

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  password?: string;
  /** OpenSSH or PEM private key. */
  privateKey?: string | Buffer;
  passphrase?: string;
  /** Refuse the host unless its key has this fingerprint ("SHA256:…", as ssh-keygen -l prints). */
  expectedHostKey?: string;
  /** TCP connect + SSH handshake + authentication (default 20 s). */
  readyTimeoutMs?: number;
}

export interface RunOptions {
  /** Run as root (directly when logged in as root, else through sudo). */
  root?: boolean;
  timeoutMs?: number;
  /** Exit codes that count as success (default [0]). */
  okCodes?: number[];
  /** Error code on failure (default HOST_COMMAND_FAILED). */
  errorCode?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

const fingerprint = (key: Buffer): string => 'SHA256:' + createHash('sha256').update(key).digest('base64').replace(/=+$/, '');

/** `install -D -m MODE SRC DEST` for each (mode, src, dest) triple of its arguments; stops at the first failure. */
export const INSTALL_SCRIPT = 'while [ $# -ge 3 ]; do install -D -m "$1" -- "$2" "$3" || exit 1; shift 3; done';

export class SshSession {
  /** How root is reached: '' (logged in as root), 'sudo' (NOPASSWD), 'sudo-password'. */
  privilege: '' | 'sudo' | 'sudo-password' | 'none' = 'none';
  uid = -1;

  private constructor(
    private readonly client: Client,
    readonly target: SshTarget,
    readonly hostKey: string,
  ) {}

  get label(): string {
    return `${this.target.username}@${this.target.host}:${this.target.port}`;
  }

  static async open(t: SshTarget): Promise<SshSession> {
    if (!t.password && !t.privateKey) throw new TStackError('INVALID_ARGUMENT', 'SSH needs a password or a private key', { field: 'password' });
    const label = `${t.username}@${t.host}:${t.port}`;
    const client = new Client();
    let seenKey = '';
    const cfg: ConnectConfig = {
      host: t.host,
      port: t.port,
      username: t.username,
      readyTimeout: t.readyTimeoutMs ?? 20_000,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      // servers that allow passwords only through PAM's keyboard-interactive
      tryKeyboard: t.password !== undefined,
      hostVerifier: (key: Buffer) => {
        seenKey = fingerprint(key);
        return !t.expectedHostKey || t.expectedHostKey === seenKey;
      },
    };
    if (t.password) cfg.password = t.password;
    if (t.privateKey) cfg.privateKey = t.privateKey;
    if (t.passphrase) cfg.passphrase = t.passphrase;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        client.removeListener('ready', onReady);
        if (t.expectedHostKey && seenKey && seenKey !== t.expectedHostKey) {
          reject(new TStackError('HOST_KEY_MISMATCH', `the SSH host key of ${t.host} changed (expected ${t.expectedHostKey}, got ${seenKey}): the host was reinstalled or someone is in the middle; if the change is expected, clear the host's sshHostKey and reconnect`, { expected: t.expectedHostKey, got: seenKey }));
        } else reject(sshError(e, label));
      };
      const onReady = (): void => {
        client.removeListener('error', onError);
        resolve();
      };
      client.once('ready', onReady);
      client.once('error', onError);
      client.on('keyboard-interactive', (_name, _instr, _lang, prompts, finish) => finish(prompts.map(() => t.password ?? '')));
      try {
        client.connect(cfg);
      } catch (e) {
        reject(sshError(e, label));
      }
    });
    client.on('error', (e) => log.warn({ target: label, err: e.message }, 'ssh connection error'));
    const s = new SshSession(client, t, seenKey);
    try {
      await s.detectPrivilege();
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  close(): void {
    this.client.end();
  }

  private async detectPrivilege(): Promise<void> {
    const id = await this.raw(['id', '-u'], undefined, 15_000);
    this.uid = Number(id.stdout.trim());
    if (this.uid === 0) {
      this.privilege = '';
      return;
    }
    if ((await this.raw(['sudo', '-n', 'true'], undefined, 15_000)).code === 0) {
      this.privilege = 'sudo';
      return;
    }
    if (this.target.password) {
      const r = await this.raw(['sudo', '-S', '-p', '', 'true'], this.target.password + '\n', 15_000);
      if (r.code === 0) {
        this.privilege = 'sudo-password';
        return;
      }
    }
    throw new TStackError('HOST_NOT_PRIVILEGED', `${this.target.username} on ${this.target.host} is not root and cannot use sudo; log in as root, or allow the user sudo (e.g. '${this.target.username} ALL=(ALL) NOPASSWD: ALL' in /etc/sudoers.d/tstack)`, { username: this.target.username });
  }

  /** Run argv; never throws for a non-zero exit (see run()). */
  private raw(argv: readonly string[], stdin: string | undefined, timeoutMs: number): Promise<RunResult> {
    const cmd = shJoin(argv);
    return new Promise<RunResult>((resolve, reject) => {
      this.client.exec(cmd, (err: Error | undefined, ch: ClientChannel) => {
        if (err) {
          reject(sshError(err, this.label));
          return;
        }
        const out: Buffer[] = [];
        const errb: Buffer[] = [];
        let done = false;
        const timer = setTimeout(() => {
          if (done) return;
          done = true;
          try {
            ch.signal('KILL');
          } catch {
            /* not supported by every server */
          }
          ch.close();
          reject(new TStackError('TIMEOUT', `remote command timed out after ${timeoutMs} ms on ${this.target.host}: ${argv[0]}`, { command: argv.join(' ') }));
        }, timeoutMs);
        ch.on('data', (b: Buffer) => out.push(b));
        ch.stderr.on('data', (b: Buffer) => errb.push(b));
        ch.on('close', (code: number | null, signal?: string) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errb).toString('utf8').trim(), code: code ?? (signal ? 128 : -1) });
        });
        if (stdin !== undefined) ch.end(stdin);
        else ch.end();
      });
    });
  }

  /** Run a command (argument array) on the host; throws a typed error on a non-OK exit code. */
  async run(argv: readonly string[], o: RunOptions = {}): Promise<RunResult> {
    let full = [...argv];
    let stdin: string | undefined;
    if (o.root && this.privilege === 'sudo') full = ['sudo', '-n', '--', ...argv];
    else if (o.root && this.privilege === 'sudo-password') {
      full = ['sudo', '-S', '-p', '', '--', ...argv];
      stdin = this.target.password + '\n';
    }
    const r = await this.raw(full, stdin, o.timeoutMs ?? 120_000);
    if (!(o.okCodes ?? [0]).includes(r.code)) {
      const last = r.stderr.split('\n').filter(Boolean).slice(-1)[0] ?? `exit code ${r.code}`;
      throw new TStackError(o.errorCode ?? 'HOST_COMMAND_FAILED', `${argv[0]} failed on ${this.target.host}: ${last}`, { command: argv.join(' '), exitCode: r.code, stderr: r.stderr.slice(-4000), stdout: r.stdout.slice(-2000) });
    }
    return r;
  }

  /** True when argv exits 0. */
  async ok(argv: readonly string[], o: RunOptions = {}): Promise<boolean> {
    const r = await this.run(argv, { ...o, okCodes: [0, 1, 2, 127, 126, 255] }).catch(() => undefined);
    return r?.code === 0;
  }

  private sftp(): Promise<SFTPWrapper> {
    return new Promise((resolve, reject) => this.client.sftp((err, s) => (err ? reject(sshError(err, this.label)) : resolve(s))));
  }

  /** A private temp directory owned by the login user (removed by the caller). */
  async mkTemp(): Promise<string> {
    const d = (await this.run(['mktemp', '-d', '/tmp/tstack-deploy.XXXXXXXX'])).stdout.trim();
    if (!/^\/tmp\/tstack-deploy\.[A-Za-z0-9]+$/.test(d)) throw new TStackError('HOST_COMMAND_FAILED', `mktemp returned an unexpected path: ${d}`);
    return d;
  }

  /** Upload a local file with sftp (as the login user). */
  async put(local: string, remote: string, mode = 0o600): Promise<void> {
    const s = await this.sftp();
    try {
      await new Promise<void>((resolve, reject) => s.fastPut(local, remote, { mode }, (e) => (e ? reject(new TStackError('HOST_COPY_FAILED', `sftp upload to ${this.target.host}:${remote} failed: ${e.message}`)) : resolve())));
    } finally {
      s.end();
    }
  }

  /** Write content to a file (as the login user, in a directory it owns). */
  async putContent(remote: string, content: string | Buffer, mode = 0o600): Promise<void> {
    const s = await this.sftp();
    try {
      await new Promise<void>((resolve, reject) => s.writeFile(remote, content, { mode }, (e) => (e ? reject(new TStackError('HOST_COPY_FAILED', `sftp write to ${this.target.host}:${remote} failed: ${e.message}`)) : resolve())));
    } finally {
      s.end();
    }
  }

  /** Install content as a root-owned file with `mode` (through a private temp file). */
  async installFile(dest: string, content: string | Buffer, mode: number, tmpDir: string): Promise<void> {
    await this.installFiles([{ dest, content, mode }], tmpDir);
  }

  /**
   * Install several root-owned files: one sftp session writes them all to private temp files, one
   * root command installs them (every SSH round trip costs, most on a busy host).
   */
  async installFiles(files: ReadonlyArray<{ dest: string; content: string | Buffer; mode: number }>, tmpDir: string): Promise<void> {
    if (files.length === 0) return;
    const staged = files.map((f) => ({ ...f, tmp: `${tmpDir}/f-${randomBytes(6).toString('hex')}` }));
    const s = await this.sftp();
    try {
      for (const f of staged) {
        await new Promise<void>((resolve, reject) =>
          s.writeFile(f.tmp, f.content, { mode: 0o600 }, (e) => (e ? reject(new TStackError('HOST_COPY_FAILED', `sftp write to ${this.target.host}:${f.tmp} failed: ${e.message}`)) : resolve())),
        );
      }
    } finally {
      s.end();
    }
    const args = staged.flatMap((f) => [f.mode.toString(8).padStart(4, '0'), f.tmp, f.dest]);
    try {
      await this.run(['sh', '-c', INSTALL_SCRIPT, 'sh', ...args], { root: true, timeoutMs: 30_000 });
    } finally {
      await this.run(['rm', '-f', '--', ...staged.map((f) => f.tmp)]).catch(() => undefined);
    }
  }
}
