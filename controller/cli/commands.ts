// `tstack <resource> list|show|create|update|delete|<action>` for every collection, generated
// from the controller's OpenAPI document (x-tstack-collections + component schemas): each
// schema field becomes a --kebab-case option, typed from its schema.
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { CliCollection } from '../api/openapi.js';
import type { Api, Job } from './client.js';
import { CliError, Exit } from './exit.js';
import { listColumns, listTable, objectTable, render, type OutputFormat } from './output.js';

// JSON Schema as served in the OpenAPI document: loosely typed on purpose.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Schema = Record<string, any>;

// the shape of the OpenAPI document's x-tstack-collections entries (what the CLI is built from)
export type { CliCollection };

export interface CliContext {
  /** The API client for the current URL and session (resolved lazily: login needs none). */
  api(): Api;
  output(): OutputFormat;
  timeoutMs(): number | undefined;
  print(s: string): void;
}

const RESERVED = new Set(['output', 'url', 'timeout', 'wait', 'file', 'set', 'help', 'query', 'limit', 'start', 'sort', 'fields', 'count']);
const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

export const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

export function resolveRef(doc: Schema, ref: string): Schema {
  const s = ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], doc);
  if (!s || typeof s !== 'object') throw new CliError(`the controller's API document has no ${ref}`, Exit.API_ERROR);
  return s as Schema;
}

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([KMGTP])i?B?$/i;
const MULT: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4, P: 1024 ** 5 };

function typesOf(s: Schema): Set<string> {
  const t = new Set<string>();
  const walk = (x: Schema): void => {
    if (Array.isArray(x.type)) x.type.forEach((y: string) => t.add(y));
    else if (x.type) t.add(x.type);
    else if (x.const !== undefined) t.add(typeof x.const);
    (x.anyOf ?? []).forEach(walk);
  };
  walk(s);
  return t;
}

/** Convert a command-line string to the JSON value the schema wants. */
export function convert(flag: string, s: Schema, raw: string): unknown {
  const t = typesOf(s);
  const fail = (what: string): never => {
    throw new CliError(`--${flag}: ${what}, got '${raw}'`, Exit.USAGE);
  };
  if (t.has('array')) {
    const items = (s.items ?? {}) as Schema;
    if (raw.trim().startsWith('[')) {
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        fail('expected a JSON list or a comma-separated list');
      }
    }
    return raw === '' ? [] : raw.split(',').map((p) => convert(flag, items, p.trim()));
  }
  if (t.has('object')) {
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      return fail('expected a JSON object');
    }
  }
  if (t.has('integer') || t.has('number')) {
    const m = SIZE_RE.exec(raw.trim());
    const n = m ? Number(m[1]) * MULT[m[2]!.toUpperCase()]! : Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) fail(`expected a number${t.has('integer') ? ' (sizes like 512M, 2G allowed)' : ''}`);
    return t.has('integer') ? Math.round(n) : n;
  }
  if (t.has('boolean')) {
    if (/^(true|yes|on|1)$/i.test(raw)) return true;
    if (/^(false|no|off|0)$/i.test(raw)) return false;
    fail('expected true or false');
  }
  return raw;
}

const describeProp = (name: string, s: Schema, required: boolean): string => {
  const bits: string[] = [];
  if (s.description) bits.push(s.description);
  const lits = (s.anyOf ?? []).filter((x: Schema) => x.const !== undefined).map((x: Schema) => x.const);
  if (lits.length) bits.push(`one of: ${lits.join(', ')}`);
  else if (s.type === 'array') bits.push('comma-separated list');
  else if (s.type) bits.push(s.type);
  if (required) bits.push('required');
  return `${name}: ${bits.join('; ')}`;
};

/** Add one option per schema property; returns a function building the body from parsed options. */
function schemaOptions(cmd: Command, schema: Schema, kind: string): (opts: Record<string, unknown>) => Record<string, unknown> {
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set<string>((schema.required ?? []) as string[]);
  const map: Array<{ attr: string; prop: string; flag: string; s: Schema }> = [];
  for (const [prop, s] of Object.entries(props)) {
    // a field named like a global option (url: the controller's) gets the kind as prefix: --image-url
    const flag = RESERVED.has(kebab(prop)) ? `${kind}-${kebab(prop)}` : kebab(prop);
    const o = new Option(`--${flag} <value>`, describeProp(prop, s, required.has(prop)));
    if (s.type === 'array') o.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    cmd.addOption(o);
    map.push({ attr: o.attributeName(), prop, flag, s });
  }
  cmd.option('-f, --file <file>', 'read the body from a JSON or YAML file (options override it)');
  cmd.option('--set <key=value>', 'set any body field (value parsed as JSON when it is JSON); repeatable', (v: string, prev: string[] = []) => [...prev, v]);
  return (opts) => {
    let body: Record<string, unknown> = {};
    if (typeof opts.file === 'string') {
      const text = readFileSync(opts.file, 'utf8');
      const v = (opts.file.endsWith('.json') ? JSON.parse(text) : parseYaml(text)) as unknown;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new CliError(`${opts.file}: expected a mapping of fields`, Exit.USAGE);
      body = { ...(v as Record<string, unknown>) };
    }
    for (const kv of (opts.set as string[] | undefined) ?? []) {
      const i = kv.indexOf('=');
      if (i <= 0) throw new CliError(`--set: expected key=value, got '${kv}'`, Exit.USAGE);
      const k = kv.slice(0, i);
      const raw = kv.slice(i + 1);
      const s = props[k];
      if (s) body[k] = convert(k, s, raw);
      else {
        try {
          body[k] = JSON.parse(raw) as unknown;
        } catch {
          body[k] = raw;
        }
      }
    }
    for (const m of map) {
      const v = opts[m.attr];
      if (v === undefined) continue;
      body[m.prop] = Array.isArray(v) ? v.flatMap((x) => convert(m.flag, m.s, String(x)) as unknown[]) : convert(m.flag, m.s, String(v));
    }
    return body;
  };
}

/** A uuid as is; a name looked up (exactly one match, else not found / ambiguous). */
export async function resolveTarget(api: Api, c: CliCollection, arg: string): Promise<string> {
  if (UUID_RE.test(arg)) return arg;
  const r = await api.call<{ inventories: Array<{ uuid: string }>; total: number }>('GET', `/v1/${c.collection}?q=${encodeURIComponent(`name=${arg}`)}&fields=uuid&limit=2`);
  if (r.body.total === 0) throw new CliError(`no ${c.kind} named '${arg}'`, Exit.NOT_FOUND, 'NOT_FOUND');
  if (r.body.total > 1) throw new CliError(`${r.body.total} ${c.collection} are named '${arg}': give the uuid`, Exit.USAGE);
  return r.body.inventories[0]!.uuid;
}

export function showResult(ctx: CliContext, v: unknown): void {
  ctx.print(render(ctx.output(), v, () => objectTable(v)));
}

/** Print a 200/201 answer, or follow a 202 job (unless --no-wait). */
export async function finish(ctx: CliContext, res: { status: number; body: unknown }, wait: boolean, label: string): Promise<void> {
  if (res.status !== 202) return showResult(ctx, res.body);
  const started = res.body as { jobUuid: string; location: string };
  if (!wait) {
    ctx.print(render(ctx.output(), started, () => `started job ${started.jobUuid} (tstack job show ${started.jobUuid})`));
    return;
  }
  const to = ctx.timeoutMs();
  const j: Job = await ctx.api().waitJob(started.jobUuid, to !== undefined ? { timeoutMs: to, label } : { label });
  if (j.state === 'Failed') {
    const e = j.error ?? { code: 'INTERNAL', message: 'the job failed without an error' };
    throw new CliError(`${label} failed: ${e.message} (job ${j.uuid})`, Exit.JOB_FAILED, e.code, e.field);
  }
  showResult(ctx, j.result ?? {});
}

export function addCollectionCommands(program: Command, doc: Schema, ctx: CliContext): void {
  const cols = (doc['x-tstack-collections'] ?? []) as CliCollection[];
  for (const c of cols) {
    const cmd = program.command(c.collection).description(c.description ?? c.collection);
    if (c.kind !== c.collection) cmd.alias(c.kind);

    cmd
      .command('list')
      .alias('ls')
      .description(`list ${c.collection}`)
      .option('-q, --query <field=value>', 'filter: field<op>value with op = != > < >= <= ~= (like, %) ?= (in, comma list); repeatable', (v: string, prev: string[] = []) => [...prev, v])
      .option('--limit <n>', 'at most n results (default 1000)')
      .option('--start <n>', 'skip the first n results')
      .option('--sort <field>', '+field (ascending) or -field (descending)')
      .option('--fields <a,b>', 'only these fields')
      .option('--count', 'print only the number of matches')
      .action(async (o: { query?: string[]; limit?: string; start?: string; sort?: string; fields?: string; count?: boolean }) => {
        const qs = new URLSearchParams();
        for (const q of o.query ?? []) qs.append('q', q);
        if (o.limit) qs.set('limit', o.limit);
        if (o.start) qs.set('start', o.start);
        if (o.sort) qs.set('sort', o.sort);
        if (o.fields) qs.set('fields', o.fields);
        if (o.count) qs.set('count', 'true');
        const s = qs.toString();
        const r = await ctx.api().call<{ inventories?: Array<Record<string, unknown>>; total: number }>('GET', `/v1/${c.collection}${s ? '?' + s : ''}`);
        if (o.count) return ctx.print(render(ctx.output(), r.body, () => String(r.body.total)));
        const items = r.body.inventories ?? [];
        ctx.print(render(ctx.output(), r.body, () => listTable(items, listColumns(items, o.fields?.split(',')), r.body.total)));
      });

    cmd
      .command('show <uuid-or-name>')
      .alias('get')
      .description(`show one ${c.kind}`)
      .action(async (arg: string) => {
        const u = await resolveTarget(ctx.api(), c, arg);
        showResult(ctx, (await ctx.api().call('GET', `/v1/${c.collection}/${u}`)).body);
      });

    if (c.create) {
      const create = c.create;
      const cc = cmd.command('create').description(`create a ${c.kind}${create.long ? ' (waits for the job unless --no-wait)' : ''}`);
      const build = schemaOptions(cc, resolveRef(doc, create.schema), c.kind);
      if (create.long) cc.option('--no-wait', 'print the job and return at once');
      cc.action(async (o: Record<string, unknown>) => {
        const body = build(o);
        const r = await ctx.api().call('POST', `/v1/${c.collection}`, body);
        await finish(ctx, r, o.wait !== false, `create ${c.kind}`);
      });
    }

    const uc = cmd.command('update <uuid-or-name>').description(`change a ${c.kind}`);
    const buildUpdate = schemaOptions(uc, resolveRef(doc, c.update.schema), c.kind);
    if (c.update.long) uc.option('--no-wait', 'print the job and return at once');
    uc.action(async (arg: string, o: Record<string, unknown>) => {
      const body = buildUpdate(o);
      if (Object.keys(body).length === 0) throw new CliError(`nothing to change: give at least one option (see tstack ${c.collection} update --help)`, Exit.USAGE);
      const u = await resolveTarget(ctx.api(), c, arg);
      await finish(ctx, await ctx.api().call('PUT', `/v1/${c.collection}/${u}`, body), o.wait !== false, `update ${c.kind}`);
    });

    const del = c.delete;
    if (del) {
      const dc = cmd.command('delete <uuid-or-name>').alias('rm').description(`delete a ${c.kind}`);
      dc.option('--cascade', 'also delete the infrastructure below it (clusters and hosts of a zone…); VMs, volumes and NICs in use still refuse');
      if (del.long) dc.option('--no-wait', 'print the job and return at once');
      dc.action(async (arg: string, o: Record<string, unknown>) => {
        const u = await resolveTarget(ctx.api(), c, arg);
        const r = await ctx.api().call('DELETE', `/v1/${c.collection}/${u}${o.cascade === true ? '?cascade=true' : ''}`);
        if (r.status === 202) return finish(ctx, r, o.wait !== false, `delete ${c.kind}`);
        ctx.print(render(ctx.output(), r.body, () => `deleted ${c.kind} ${u}`));
      });
    }

    for (const a of c.actions) {
      const name = kebab(a.name);
      if (['list', 'ls', 'show', 'get', 'create', 'update', 'delete', 'rm'].includes(name)) continue;
      const ac = cmd.command(`${name} <uuid-or-name>`).description(a.description ?? `${a.name} action`);
      const build = schemaOptions(ac, resolveRef(doc, a.schema), c.kind);
      if (a.long) ac.option('--no-wait', 'print the job and return at once');
      ac.action(async (arg: string, o: Record<string, unknown>) => {
        const params = build(o);
        const u = await resolveTarget(ctx.api(), c, arg);
        const r = await ctx.api().call('POST', `/v1/${c.collection}/${u}/actions`, { [a.name]: params });
        await finish(ctx, r, o.wait !== false, `${a.name} ${c.kind}`);
      });
    }
  }
}
