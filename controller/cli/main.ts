#!/usr/bin/env node
// tstack: the command-line client of a tstack controller.
//   tstack login [--url http://127.0.0.1:8080] [-a admin] [-p … | --password-stdin]
//   tstack zones list -q name=aio-zone -o json
//   tstack vm-instance create --name web1 --image-uuid … --l3-network-uuids … --instance-offering-uuid …
//   tstack vm-instance stop web1 --type cold
// Resource commands are generated from the controller's /v1/openapi.json (cached for offline
// --help). Exit codes: controller/cli/exit.ts and docs/api.md.
import { Command, CommanderError, Option } from 'commander';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Api, type Job } from './client.js';
import { CliError, Exit } from './exit.js';
import { addCollectionCommands, showResult, type CliContext } from './commands.js';
import { listTable, render, type OutputFormat } from './output.js';
import { dropSession, loadSession, resolveUrl, saveSession, sessionFilePath } from './session.js';
import { tstackVersion } from '../../shared/sysinfo.js';

/** What /v1/events sends (the parts the table view shows). */
interface EventData {
  time?: string;
  kind?: string;
  uuid?: string;
  resource?: { name?: string; state?: string; status?: string };
  job?: { uuid: string; type?: string; state?: string; progress?: number; message?: string };
}

const STATIC = new Set(['login', 'logout', 'whoami', 'events', 'job', 'jobs', 'help', '--help', '-h', '--version', '-V']);

function cachePath(url: string): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'tstack', `openapi-${createHash('sha256').update(url).digest('hex').slice(0, 16)}.json`);
}

/** The API document: fresh from the controller, else the cached copy, else undefined. */
async function loadDoc(url: string): Promise<Record<string, unknown> | undefined> {
  try {
    const res = await fetch(`${url}/v1/openapi.json`, { signal: AbortSignal.timeout(10_000) });
    if (res.ok) {
      const doc = (await res.json()) as Record<string, unknown>;
      try {
        const p = cachePath(url);
        mkdirSync(join(p, '..'), { recursive: true, mode: 0o700 });
        writeFileSync(p, JSON.stringify(doc));
      } catch {
        /* a cache is a cache */
      }
      return doc;
    }
  } catch {
    /* fall back to the cache */
  }
  const p = cachePath(url);
  if (existsSync(p)) {
    try {
      return JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** The value of a global option (no resource option shares these names: see RESERVED in commands.ts). */
function argValue(argv: string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === name) return argv[i + 1];
    if (argv[i]!.startsWith(name + '=')) return argv[i]!.slice(name.length + 1);
  }
  return undefined;
}

async function readSecret(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) throw new CliError('no password: use --password, --password-stdin or TSTACK_PASSWORD', Exit.USAGE);
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const out = rl as unknown as { _writeToOutput: (s: string) => void; output: NodeJS.WritableStream };
  let muted = false;
  out._writeToOutput = (s: string) => {
    if (!muted) out.output.write(s);
  };
  return new Promise((resolve) => {
    rl.question(prompt, (a) => {
      rl.close();
      process.stderr.write('\n');
      resolve(a);
    });
    muted = true;
  });
}

async function readStdin(): Promise<string> {
  let s = '';
  for await (const chunk of process.stdin) s += String(chunk);
  return s.replace(/\r?\n$/, '');
}

export async function run(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const url = resolveUrl(argValue(argv, '--url'));
  // the first word that is not a global option or its value: the command
  let first: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (['--url', '--output', '-o', '--timeout'].includes(a)) i++;
    else if (!a.startsWith('-')) {
      first = a;
      break;
    }
  }
  const program = new Command('tstack')
    .description('command-line client of a tstack controller (exit codes: 0 ok, 1 API error, 2 usage/invalid input, 3 auth, 4 not found, 5 conflict, 6 job failed, 7 unreachable, 8 timeout)')
    .version(tstackVersion())
    .addOption(new Option('--url <url>', 'controller URL (env TSTACK_URL; default: the last login, else http://127.0.0.1:8080)'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .addOption(new Option('--timeout <seconds>', 'give up waiting for a job after this long (exit 8)'))
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });

  const g = (): { output: OutputFormat; timeout?: string } => program.opts();
  let api: Api | undefined;
  const ctx: CliContext = {
    api: () => {
      if (api) return api;
      const s = loadSession(url);
      if (!s) throw new CliError(`not logged in to ${url}: run tstack login${url !== 'http://127.0.0.1:8080' ? ` --url ${url}` : ''}`, Exit.AUTH);
      return (api = new Api(url, s.token));
    },
    output: () => g().output,
    timeoutMs: () => {
      const t = g().timeout;
      if (t === undefined) return undefined;
      const n = Number(t);
      if (!Number.isFinite(n) || n <= 0) throw new CliError(`--timeout: expected seconds, got '${t}'`, Exit.USAGE);
      return n * 1000;
    },
    print: out,
  };

  program
    .command('login')
    .description('log in and keep the session token (in ' + sessionFilePath() + ', mode 0600)')
    .option('-a, --account <name>', 'account name', 'admin')
    .option('-p, --password <password>', 'password (prefer --password-stdin or TSTACK_PASSWORD)')
    .option('--password-stdin', 'read the password from stdin')
    .action(async (o: { account: string; password?: string; passwordStdin?: boolean }) => {
      const password = o.password ?? (o.passwordStdin ? await readStdin() : process.env.TSTACK_PASSWORD) ?? (await readSecret(`password for ${o.account}@${url}: `));
      const r = await new Api(url).call<{ token: string; expiresAt: string }>('POST', '/v1/sessions', { accountName: o.account, password });
      saveSession(url, { token: r.body.token, expiresAt: r.body.expiresAt, accountName: o.account });
      out(render(g().output, { url, accountName: o.account, expiresAt: r.body.expiresAt }, () => `logged in to ${url} as ${o.account} (session expires ${r.body.expiresAt})`));
    });

  program
    .command('logout')
    .description('end the session and forget the token')
    .action(async () => {
      const s = loadSession(url);
      if (s) {
        await new Api(url, s.token).call('DELETE', '/v1/sessions/current').catch((e: unknown) => {
          if (!(e instanceof CliError) || e.exitCode !== Exit.AUTH) throw e;
        });
        if (!process.env.TSTACK_TOKEN) dropSession(url);
      }
      out(render(g().output, { url, loggedOut: true }, () => `logged out of ${url}`));
    });

  program
    .command('whoami')
    .description('show the account of the current session')
    .action(async () => {
      const a = ctx.api();
      const s = loadSession(url)!;
      // a normal account sees only itself; the admin sees all, so ask for the session's name
      const q = s.accountName ? `q=${encodeURIComponent(`name=${s.accountName}`)}&` : '';
      const r = await a.call<{ inventories: Array<Record<string, unknown>> }>('GET', `/v1/accounts?${q}limit=1&sort=createDate&fields=uuid,name,type`);
      const me = r.body.inventories[0];
      showResult(ctx, { url, ...(me ?? {}), expiresAt: s.expiresAt || undefined });
    });

  program
    .command('events')
    .description('stream resource changes and job progress as they happen (reconnects by itself; Ctrl-C to stop)')
    .option('--types <a,b>', 'only these event types (resource.created, resource.updated, resource.deleted, job.created, job.progress, job.finished)')
    .option('--kinds <a,b>', "only these resource kinds (zone, vm-instance…; 'job' for jobs)")
    .option('--count <n>', 'exit after n events')
    .action(async (o: { types?: string; kinds?: string; count?: string }) => {
      const max = o.count === undefined ? Infinity : Number(o.count);
      if (!Number.isInteger(max) && max !== Infinity) throw new CliError(`--count: expected a whole number, got '${o.count}'`, Exit.USAGE);
      const qs = new URLSearchParams();
      if (o.types) qs.set('types', o.types);
      if (o.kinds) qs.set('kinds', o.kinds);
      const a = ctx.api();
      let seen = 0;
      let lastId = '';
      const print = (event: string, data: EventData): void => {
        const fmt = g().output;
        if (fmt === 'json') return out(JSON.stringify({ event, ...data }));
        if (fmt === 'yaml') return out(render('yaml', { event, ...data }, () => '') + '\n---');
        if (data.job) {
          const j = data.job;
          return out([data.time, event, j.uuid, j.type, j.state, `${j.progress ?? 0}%`, j.message ?? ''].join('  ').trimEnd());
        }
        const r = data.resource ?? {};
        out([data.time, event, data.kind, data.uuid, r.name ?? '', r.state ?? r.status ?? ''].join('  ').trimEnd());
      };
      for (let attempt = 0; seen < max; attempt++) {
        const headers: Record<string, string> = { authorization: `Bearer ${a.token}`, accept: 'text/event-stream' };
        if (lastId) headers['last-event-id'] = lastId;
        let res: Response;
        try {
          res = await fetch(`${url}/v1/events${qs.size ? '?' + qs.toString() : ''}`, { headers });
        } catch (e) {
          if (attempt === 0) throw new CliError(`cannot reach the controller at ${url}: ${(e as Error).message}`, Exit.UNREACHABLE);
          await new Promise((r) => setTimeout(r, 2000));
          continue;
        }
        if (res.status === 401 || res.status === 403) throw new CliError('session expired or not allowed (run: tstack login)', Exit.AUTH);
        if (!res.ok || !res.body) throw new CliError(`GET /v1/events: HTTP ${res.status}`, Exit.API_ERROR);
        const dec = new TextDecoder();
        let buf = '';
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0 && seen < max) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const f: Record<string, string> = {};
            for (const line of block.split('\n')) {
              const m = /^(\w+): ?(.*)$/.exec(line);
              if (m) f[m[1]!] = m[2]!;
            }
            if (!f.event || f.data === undefined) continue;
            if (f.id) lastId = f.id;
            if (f.event === 'resync') {
              process.stderr.write(`tstack: some events were missed (${JSON.parse(f.data).reason})\n`);
              continue;
            }
            print(f.event, JSON.parse(f.data) as EventData);
            seen++;
          }
          if (seen >= max) break;
        }
        if (seen < max) await new Promise((r) => setTimeout(r, 1000));
      }
      process.exit(Exit.OK);
    });

  const job = program.command('job').alias('jobs').description('long operations');
  job
    .command('list')
    .description('jobs of the account, newest first')
    .option('-q, --query <field=value>', 'filter, e.g. state=Running; repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--limit <n>', 'at most n jobs', '50')
    .action(async (o: { query?: string[]; limit: string }) => {
      const qs = new URLSearchParams({ sort: '-createDate', limit: o.limit });
      for (const q of o.query ?? []) qs.append('q', q);
      const r = await ctx.api().call<{ inventories: Array<Record<string, unknown>>; total: number }>('GET', `/v1/jobs?${qs.toString()}`);
      out(render(g().output, r.body, () => listTable(r.body.inventories, ['uuid', 'type', 'state', 'progress', 'resourceUuid', 'createDate'])));
    });
  job
    .command('show <uuid>')
    .description('one job')
    .action(async (u: string) => showResult(ctx, (await ctx.api().call('GET', `/v1/jobs/${u}`)).body));
  job
    .command('wait <uuid>')
    .description('wait for a job to end (exit 6 if it failed)')
    .action(async (u: string) => {
      const to = ctx.timeoutMs();
      const j: Job = await ctx.api().waitJob(u, to !== undefined ? { timeoutMs: to } : {});
      showResult(ctx, j);
      if (j.state === 'Failed') throw new CliError(`job ${u} failed: ${j.error?.message ?? ''}`, Exit.JOB_FAILED, j.error?.code);
    });

  const doc = first && STATIC.has(first) ? undefined : await loadDoc(url);
  if (doc) addCollectionCommands(program, doc, ctx);
  else if (first && !STATIC.has(first)) {
    throw new CliError(`cannot reach the controller at ${url} to learn its resources (and no cached API document); set --url or TSTACK_URL`, Exit.UNREACHABLE);
  }

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return Exit.OK;
      return e.exitCode === 0 ? Exit.OK : Exit.USAGE;
    }
    throw e;
  }
  return Exit.OK;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  // `tstack … | head`: a closed pipe ends the output quietly
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  let code: number;
  try {
    code = await run(argv);
  } catch (e) {
    if (e instanceof CliError) {
      process.stderr.write(`tstack: ${e.code ? e.code + ': ' : ''}${e.message}${e.field && !e.message.includes(e.field) ? ` (field: ${e.field})` : ''}\n`);
      code = e.exitCode;
    } else {
      process.stderr.write(`tstack: ${(e as Error).message ?? String(e)}\n`);
      code = Exit.API_ERROR;
    }
  }
  process.exitCode = code;
}

/** Run as a program (also through an npm bin symlink), not when imported. */
function isMain(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) void main();
