// The tstack web console: a single-page app on the controller's own origin.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { currentSession, expireSession, logout, onSession, type Session } from './lib/api';
import { useLive, useRoute } from './lib/hooks';
import { collections, dismiss, loadDoc, startLive, state, stopLive } from './lib/live';
import { ConsoleView } from './views/console';
import { CreateView } from './views/create';
import { Dashboard } from './views/dashboard';
import { DetailView } from './views/detail';
import { JobsView } from './views/jobs';
import { ListView } from './views/list';
import { Login } from './views/login';
import { VmWizard } from './views/wizard';
import './style.css';

const GROUPS: Array<[string, string[]]> = [
  ['Compute', ['vm-instances', 'volumes', 'images', 'instance-offerings', 'disk-offerings', 'snapshots', 'volume-snapshots']],
  ['Network', ['l2-networks', 'l3-networks', 'security-groups', 'vips', 'eips', 'load-balancers', 'vm-nics']],
  ['Infrastructure', ['zones', 'clusters', 'hosts', 'primary-storage', 'backup-storage']],
];

function Nav() {
  const all = collections().map((c) => c.collection);
  const grouped = new Set(GROUPS.flatMap(([, cs]) => cs));
  const groups: Array<[string, string[]]> = [...GROUPS.map(([g, cs]) => [g, cs.filter((c) => all.includes(c))] as [string, string[]]), ['Other', all.filter((c) => !grouped.has(c))]];
  return (
    <nav class="side" aria-label="main">
      <a href="#/">Dashboard</a>
      <a href="#/vm-wizard">New VM</a>
      <a href="#/jobs">Jobs</a>
      {groups
        .filter(([, cs]) => cs.length)
        .map(([g, cs]) => (
          <div key={g}>
            <h4>{g}</h4>
            {cs.map((c) => (
              <a key={c} href={`#/c/${c}`}>
                {c}
              </a>
            ))}
          </div>
        ))}
    </nav>
  );
}

function Toasts() {
  return (
    <div class="toasts" aria-live="polite">
      {state.toasts.map((t) => (
        <div key={t.id} class={`toast ${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'} data-job={t.jobUuid}>
          <span>{t.text}</span>
          {t.kind === 'job' && <progress max={100} value={t.progress ?? 0} aria-label="progress" />}
          <button class="link" aria-label="dismiss" onClick={() => dismiss(t.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}

function Page({ route }: { route: string[] }) {
  const [a, b, c] = route;
  if (a === 'vm-wizard') return <VmWizard />;
  if (a === 'jobs') return <JobsView />;
  if (a === 'console' && b) return <ConsoleView uuid={b} />;
  if (a === 'c' && b) {
    const col = collections().find((x) => x.collection === b);
    if (!col) return <p class="error">no such collection: {b}</p>;
    if (c === 'new' && col.create) return <CreateView col={col} />;
    if (c) return <DetailView col={col} uuid={c} />;
    return <ListView key={b} col={col} />;
  }
  return <Dashboard />;
}

function App() {
  useLive();
  const route = useRoute();
  const [session, setSession] = useState<Session | undefined>(currentSession());
  const [reason, setReason] = useState<string | undefined>();
  const [ready, setReady] = useState(false);
  useEffect(
    () =>
      onSession((s, why) => {
        setSession(s);
        setReason(why);
      }),
    [],
  );
  useEffect(() => {
    if (!session) {
      stopLive();
      setReady(false);
      return;
    }
    void loadDoc().then(() => setReady(true));
    startLive();
    // the session ends at its expiry even when nothing is clicked
    const ms = Date.parse(session.expiresAt) - Date.now();
    const t = setTimeout(() => expireSession('Your session has expired; log in again.'), Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    return () => clearTimeout(t);
  }, [session?.token]);
  if (!session) return <Login reason={reason} />;
  return (
    <div class="shell">
      <button class="skip" onClick={() => document.getElementById('main')?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <a href="#/" class="brand">
          tstack
        </a>
        <span class={`live ${state.streamUp ? 'up' : 'down'}`} title="live updates">
          {state.streamUp ? '● live' : '○ offline'}
        </span>
        <span class="who">{session.accountName}</span>
        <button onClick={() => void logout()}>Log out</button>
      </header>
      <Nav />
      <main class="content" id="main" tabIndex={-1}>{ready ? <Page route={route} /> : <p class="muted">loading…</p>}</main>
      <Toasts />
    </div>
  );
}

render(<App />, document.getElementById('app')!);
