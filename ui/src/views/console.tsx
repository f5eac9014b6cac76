// The in-browser VNC console: a single-use token from requestConsoleAccess, then noVNC over the
// controller's WebSocket proxy (the session proves itself in a subprotocol; the VM's console
// password is typed by the proxy, never by the user).
import RFB from '@novnc/novnc';
import { useEffect, useRef, useState } from 'preact/hooks';
import { currentSession, get, post } from '../lib/api';
import type { Resource } from '../lib/types';

export function ConsoleView({ uuid }: { uuid: string }) {
  const screen = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | undefined>(undefined);
  const [status, setStatus] = useState('connecting…');
  const [vm, setVm] = useState<Resource | undefined>();
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let gone = false;
    void (async () => {
      try {
        setVm(await get<Resource>(`/v1/vm-instances/${uuid}`));
        const a = await post<{ url: string; token: string; expiresAt: string }>(`/v1/vm-instances/${uuid}/actions`, { requestConsoleAccess: {} });
        if (gone || !screen.current) return;
        const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${a.url}`;
        const r = new RFB(screen.current, url, { wsProtocols: ['binary', `tstack-session.${currentSession()?.token ?? ''}`] });
        r.scaleViewport = true;
        r.background = '#111';
        r.addEventListener('connect', () => setStatus('connected'));
        r.addEventListener('disconnect', (e: Event) => setStatus((e as CustomEvent<{ clean: boolean }>).detail.clean ? 'disconnected' : 'connection lost'));
        r.addEventListener('securityfailure', (e: Event) => setStatus(`refused: ${String((e as CustomEvent<{ reason?: string }>).detail.reason ?? '')}`));
        rfb.current = r;
      } catch (e) {
        setStatus(`cannot open the console: ${(e as Error).message}`);
      }
    })();
    return () => {
      gone = true;
      rfb.current?.disconnect();
      rfb.current = undefined;
    };
  }, [uuid, attempt]);
  return (
    <section class="console">
      <header class="bar">
        <h1>Console: {vm?.name ?? uuid}</h1>
        <a href={`#/c/vm-instances/${uuid}`}>← VM</a>
      </header>
      <div class="actions">
        <span class="badge" data-testid="console-status" role="status">
          {status}
        </span>
        <button onClick={() => rfb.current?.sendCtrlAltDel()} disabled={status !== 'connected'}>
          Ctrl-Alt-Del
        </button>
        <button onClick={() => setAttempt((n) => n + 1)} disabled={status === 'connected'}>
          Reconnect
        </button>
      </div>
      <div class="screen" ref={screen} data-testid="console-screen" />
    </section>
  );
}
