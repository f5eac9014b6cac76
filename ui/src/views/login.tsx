import { useState } from 'preact/hooks';
import { login } from '../lib/api';

export function Login({ reason }: { reason: string | undefined }) {
  const [account, setAccount] = useState('admin');
  const [password, setPassword] = useState('');
  const [err, setErr] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setErr(undefined);
    try {
      await login(account, password);
    } catch (x) {
      setErr((x as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={(e) => void submit(e)} aria-label="log in">
        <h1>tstack</h1>
        {reason && <p class="notice" role="status">{reason}</p>}
        <label for="account">Account</label>
        <input id="account" name="account" autoComplete="username" value={account} onInput={(e) => setAccount((e.target as HTMLInputElement).value)} required />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autoComplete="current-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} required />
        {err && <div class="error" role="alert">{err}</div>}
        <button type="submit" class="primary" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}
