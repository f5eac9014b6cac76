// Boilerplate shared by the three agent executables.
import { AgentServer, type AgentServerOptions } from './server.js';
import { parseDaemonArgs, runDaemon, type DaemonConfig, type DaemonDefaults } from '../daemon.js';
import { tstackVersion } from '../sysinfo.js';

export function startAgent(
  d: DaemonDefaults,
  setup: (server: AgentServer, cfg: DaemonConfig) => Promise<(() => Promise<void>) | void>,
  opts: Partial<AgentServerOptions> = {},
): void {
  runDaemon(d.name, async () => {
    const cfg = parseDaemonArgs(d);
    const server = new AgentServer({ agent: d.name, version: tstackVersion(), token: cfg.token, ...opts });
    if (cfg.controllerUrl) server.events.configure(cfg.controllerUrl, cfg.token);
    const cleanup = await setup(server, cfg);
    await server.listen(cfg.listenHost, cfg.listenPort);
    return async () => {
      await server.close();
      if (cleanup) await cleanup();
    };
  });
}
