// App-wide state outside components: the API description, toasts, jobs in flight, and the
// event stream's subscribers (views refetch when their kind changes).
import type { JobView } from './types';
import type { OpenApiDoc } from './schema';
import { currentSession, expireSession, get } from './api';
import { openEvents, type EventStream } from './sse';

export interface Toast {
  id: number;
  kind: 'info' | 'error' | 'job';
  text: string;
  jobUuid?: string;
  progress?: number;
}

type Fn = () => void;
const changed = new Set<Fn>();
const notify = (): void => changed.forEach((f) => f());
export const onChange = (f: Fn): Fn => {
  changed.add(f);
  return () => changed.delete(f);
};

export const state = {
  doc: undefined as OpenApiDoc | undefined,
  toasts: [] as Toast[],
  streamUp: false,
};

let seq = 0;
export function toast(kind: Toast['kind'], text: string, extra: Partial<Toast> = {}): number {
  const t: Toast = { id: ++seq, kind, text, ...extra };
  state.toasts = [...state.toasts, t];
  notify();
  if (kind === 'info') setTimeout(() => dismiss(t.id), 5000);
  return t.id;
}
export function dismiss(id: number): void {
  state.toasts = state.toasts.filter((t) => t.id !== id);
  notify();
}

/** Follow a job in a toast: progress bar, then gone on success or the API's error text on failure. */
export function trackJob(jobUuid: string, title: string): void {
  toast('job', title, { jobUuid, progress: 0 });
  // the job may have ended before its events reach us
  void get<JobView>(`/v1/jobs/${jobUuid}`).then(jobUpdate, () => undefined);
}

function jobUpdate(j: JobView): void {
  const t = state.toasts.find((x) => x.jobUuid === j.uuid);
  if (j.state === 'Failed') {
    if (t) dismiss(t.id);
    if (!state.toasts.some((x) => x.kind === 'error' && x.jobUuid === j.uuid)) toast('error', `${t?.text ?? j.type} failed: ${j.error?.message ?? 'unknown error'}`, { jobUuid: j.uuid });
    return;
  }
  if (!t) return;
  if (j.state === 'Succeeded') {
    dismiss(t.id);
    toast('info', `${t.text}: done`);
    return;
  }
  state.toasts = state.toasts.map((x) => (x.id === t.id ? { ...x, progress: j.progress ?? x.progress ?? 0 } : x));
  notify();
}

type ResourceListener = (kind: string, uuid: string) => void;
const resourceListeners = new Set<ResourceListener>();
export const onResource = (f: ResourceListener): Fn => {
  resourceListeners.add(f);
  return () => resourceListeners.delete(f);
};

let stream: EventStream | undefined;
export function startLive(): void {
  stream?.close();
  stream = openEvents(
    () => currentSession()?.token,
    (m) => {
      let d: { kind?: string; uuid?: string; job?: JobView };
      try {
        d = JSON.parse(m.data) as typeof d;
      } catch {
        return;
      }
      if (m.event.startsWith('resource.') && d.kind && d.uuid) resourceListeners.forEach((f) => f(d.kind!, d.uuid!));
      else if (m.event.startsWith('job.') && d.job) {
        jobUpdate(d.job);
        resourceListeners.forEach((f) => f('job', d.job!.uuid));
      } else if (m.event === 'resync') resourceListeners.forEach((f) => f('*', ''));
    },
    (up) => {
      state.streamUp = up;
      notify();
    },
    () => expireSession('Your session has expired; log in again.'),
  );
}
export function stopLive(): void {
  stream?.close();
  stream = undefined;
}

export async function loadDoc(): Promise<OpenApiDoc> {
  state.doc ??= await get<OpenApiDoc>('/v1/openapi.json');
  notify();
  return state.doc;
}

export const collections = (): OpenApiDoc['x-tstack-collections'] => state.doc?.['x-tstack-collections'] ?? [];
export const kinds = (): string[] => collections().map((c) => c.kind);
export const collectionOfKind = (kind: string): string | undefined => collections().find((c) => c.kind === kind)?.collection;
