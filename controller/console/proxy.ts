// The console WebSocket proxy: GET /v1/console/<token> (Upgrade: websocket) → the VNC server of
// the VM on its host. The browser proves its session in a subprotocol
// (`tstack-session.<session token>`, since a browser WebSocket cannot send headers) next to
// `binary`; the console token is claimed (single use), must be unexpired, issued to the same
// account and for a VM that is still running on the same host. Every refusal is a plain HTTP
// answer before the upgrade (401/403/404/409), so no WebSocket ever opens for it.
import { connect, type Socket } from 'node:net';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { TStackError, httpStatusOf } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import type { AuthService } from '../auth/accounts.js';
import type { InventoryStore } from '../store/types.js';
import { claimConsoleToken, vncPassword, type ConsoleTicket } from './tokens.js';
import { authenticateUpstream, ByteQueue, greetDownstream } from './rfb.js';

const log = logger('console');
const PATH_RE = /^\/v1\/console\/([^/?#]+)$/;
export const SESSION_PROTOCOL_PREFIX = 'tstack-session.';
const HANDSHAKE_MS = 15_000;

export interface ConsoleProxy {
  /** Sessions open now (tests watch it drop to 0). */
  readonly active: number;
  /** End every session (1001 going away) and stop accepting. */
  close(): void;
}

function refuse(socket: Duplex, err: TStackError): void {
  const status = httpStatusOf(err.code);
  const body = JSON.stringify({ code: err.code, message: err.message });
  socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 404 ? 'Not Found' : status === 409 ? 'Conflict' : 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

function protocolsOf(req: IncomingMessage): string[] {
  return String(req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Take the upgrade requests of /v1/console/* on the controller's HTTP server. */
export function attachConsoleProxy(server: Server, d: { store: InventoryStore; auth: AuthService }): ConsoleProxy {
  const sessions = new Set<{ ws: WebSocket; upstream: Socket }>();
  let closed = false;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 1024 * 1024,
    perMessageDeflate: false,
    // answer `binary` (noVNC's); never echo the session subprotocol
    handleProtocols: (ps) => (ps.has('binary') ? 'binary' : false),
  });

  async function admit(req: IncomingMessage): Promise<ConsoleTicket> {
    const m = PATH_RE.exec((req.url ?? '').split('?')[0]!);
    if (!m) throw new TStackError('NOT_FOUND', `no such endpoint: ${req.url ?? ''}`);
    const session = protocolsOf(req).find((p) => p.startsWith(SESSION_PROTOCOL_PREFIX))?.slice(SESSION_PROTOCOL_PREFIX.length);
    const principal = await d.auth.authenticate(session);
    const t = await claimConsoleToken(d.store, decodeURIComponent(m[1]!), principal.accountUuid);
    const vm = await d.store.get(t.vmUuid);
    if (!vm || vm.kind !== 'vm-instance') throw new TStackError('NOT_FOUND', `VM ${t.vmUuid} no longer exists`);
    if (vm.state !== 'Running' && vm.state !== 'Paused') throw new TStackError('CONFLICT', `VM ${String(vm.name)} is ${String(vm.state)}; the console needs it running`);
    if (vm.hostUuid !== t.hostUuid) throw new TStackError('CONFLICT', `VM ${String(vm.name)} moved to another host; request console access again`);
    return t;
  }

  function run(ws: WebSocket, t: ConsoleTicket, password: string | undefined): void {
    const upstream = connect({ host: t.vncHost, port: t.vncPort });
    const s = { ws, upstream };
    sessions.add(s);
    const up = new ByteQueue();
    const down = new ByteQueue();
    let piping = false;
    let ended = false;
    const end = (code: number, reason: string): void => {
      if (ended) return;
      ended = true;
      sessions.delete(s);
      upstream.destroy();
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason.slice(0, 120));
      log.info({ vm: t.vmUuid, code, reason }, 'console session ended');
    };
    const timer = setTimeout(() => end(1011, 'console: VNC handshake timed out'), HANDSHAKE_MS);
    upstream.setNoDelay(true);
    upstream.on('data', (b: Buffer) => {
      if (piping) ws.send(b, { binary: true });
      else up.push(b);
    });
    upstream.on('error', (e) => {
      up.close(e);
      end(1011, `console: VNC server: ${e.message}`);
    });
    upstream.on('close', () => {
      up.close(new Error('VNC server closed the connection'));
      end(1000, 'the VNC server closed the connection (VM stopped?)');
    });
    ws.on('message', (data: RawData) => {
      const b = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (piping) upstream.write(b);
      else down.push(b);
    });
    ws.on('close', () => {
      down.close(new Error('the browser went away'));
      end(1000, 'closed by the client');
    });
    ws.on('error', () => end(1011, 'websocket error'));
    void (async () => {
      await authenticateUpstream(up, (b) => upstream.write(b), password);
      await greetDownstream(down, (b) => ws.send(b, { binary: true }));
      clearTimeout(timer);
      piping = true;
      const early = up.drain();
      if (early.length) ws.send(early, { binary: true });
      const fromClient = down.drain();
      if (fromClient.length) upstream.write(fromClient);
      log.info({ vm: t.vmUuid, account: t.accountUuid }, 'console session open');
    })().catch((e: unknown) => {
      clearTimeout(timer);
      end(1011, e instanceof Error ? e.message : String(e));
    });
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!PATH_RE.test((req.url ?? '').split('?')[0]!) || closed) {
      refuse(socket, new TStackError('NOT_FOUND', `no WebSocket endpoint at ${req.url ?? ''}`));
      return;
    }
    socket.on('error', () => socket.destroy());
    void admit(req).then(
      async (t) => {
        const vm = await d.store.get(t.vmUuid);
        wss.handleUpgrade(req, socket, head, (ws) => run(ws, t, vncPassword(vm?._consolePassword)));
      },
      (e: unknown) => {
        const err = TStackError.from(e);
        log.info({ code: err.code, message: err.message }, 'console connection refused');
        refuse(socket, err.code === 'INTERNAL' ? new TStackError('INTERNAL', 'console: internal error; see the controller log') : err);
      },
    );
  };
  server.on('upgrade', onUpgrade);
  return {
    get active() {
      return sessions.size;
    },
    close() {
      closed = true;
      server.off('upgrade', onUpgrade);
      for (const s of [...sessions]) {
        s.upstream.destroy();
        s.ws.close(1001, 'the controller is shutting down');
      }
      sessions.clear();
      wss.close();
    },
  };
}
