// The web console's static files (built by `npm run build` into dist/ui) at `/`, same origin as
// /v1. `/`, and a page request (Accept: text/html) for a path that names no file, get index.html
// (the single-page app routes itself). Nothing but files under dist/ui is ever read.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Koa from 'koa';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

/** Everything the page loads comes from here; the console's WebSocket goes to the same host. */
const CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** The package root (holds package.json): from controller/webui (tsx) or dist/controller/webui. */
function packageRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
}

export const defaultUiDir = (): string => join(packageRoot(), 'dist', 'ui');

const API = /^\/(v1|health|metrics)(\/|$)/;

export function uiMiddleware(dir = defaultUiDir()): Koa.Middleware {
  const root = normalize(dir + sep);
  return async (ctx, next) => {
    if ((ctx.method !== 'GET' && ctx.method !== 'HEAD') || API.test(ctx.path)) return next();
    let rel: string;
    try {
      rel = decodeURIComponent(ctx.path);
    } catch {
      return next();
    }
    let file = normalize(join(root, rel));
    if (!file.startsWith(root)) return next();
    const isFile = existsSync(file) && statSync(file).isFile();
    if (!isFile) {
      // a missing asset is a 404; another path is the app only for a browser asking for a page
      // (API clients keep their JSON 404 for a mistyped path)
      if (rel.startsWith('/assets/') || extname(rel) !== '') return next();
      if (rel !== '/' && !/\btext\/html\b/.test(ctx.get('accept'))) return next();
      file = join(root, 'index.html');
      if (!existsSync(file)) {
        ctx.status = 503;
        ctx.type = 'text/plain';
        ctx.body = `the web console is not built (${root} is missing): run npm run build\n`;
        return;
      }
    }
    ctx.type = TYPES[extname(file)] ?? 'application/octet-stream';
    // hashed asset names change with their content; index.html must be re-read
    ctx.set('Cache-Control', file.includes(`${sep}assets${sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache');
    ctx.set('Content-Security-Policy', CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.body = readFileSync(file);
  };
}
