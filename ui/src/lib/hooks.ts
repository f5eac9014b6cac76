import { useEffect, useState } from 'preact/hooks';
import { onChange, onResource } from './live';

/** Re-render on any app-state change (toasts, stream status, API description). */
export function useLive(): void {
  const [, set] = useState(0);
  useEffect(() => onChange(() => set((n) => n + 1)), []);
}

/** The hash route, e.g. '#/c/vm-instances/<uuid>' → ['c', 'vm-instances', '<uuid>']. */
export function useRoute(): string[] {
  const parse = (): string[] => location.hash.replace(/^#\/?/, '').split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent);
  const [r, set] = useState(parse);
  useEffect(() => {
    const f = (): void => set(parse());
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  return r;
}

export const go = (path: string): void => {
  location.hash = '#' + path;
};

/** Load data, and again (debounced) whenever a resource of one of `kinds` changes. */
export function useData<T>(load: () => Promise<T>, deps: unknown[], kinds: string[]): { data: T | undefined; error: string | undefined; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(undefined);
      },
      (e: unknown) => live && setError(e instanceof Error ? e.message : String(e)),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  useEffect(() => {
    let t: ReturnType<typeof setTimeout> | undefined;
    const off = onResource((k) => {
      if (k !== '*' && !kinds.includes(k)) return;
      clearTimeout(t);
      t = setTimeout(() => setN((x) => x + 1), 250);
    });
    return () => {
      off();
      clearTimeout(t);
    };
  }, [kinds.join(',')]);
  return { data, error, reload: () => setN((x) => x + 1) };
}
