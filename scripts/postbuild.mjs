// Make the daemon/CLI entry points executable after tsc (tsc keeps the shebang but not the mode).
import { chmodSync, existsSync } from 'node:fs';
import { URL } from 'node:url';
for (const f of ['controller/cli/main.js', 'controller/main.js', 'kvmagent/main.js', 'storageagent/main.js', 'vrouteragent/main.js', 'simulator/main.js']) {
  const p = new URL(`../dist/${f}`, import.meta.url);
  if (existsSync(p)) chmodSync(p, 0o755);
}
