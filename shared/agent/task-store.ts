// Finished task results, kept for a retention window so a controller that missed a callback
// can ask again (GET /task/<id>), and so a repeated task id joins or returns the first run.
import type { TaskResult } from '../protocol/index.js';

interface Entry {
  result: TaskResult;
  done: Promise<TaskResult>;
  expiresAt?: number;
}

export class TaskStore {
  private entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout;

  constructor(private readonly retentionMs = 15 * 60_000) {
    this.timer = setInterval(() => this.gc(), Math.min(60_000, retentionMs)).unref();
  }

  get(taskId: string): Entry | undefined {
    return this.entries.get(taskId);
  }

  start(taskId: string, command: string, work: () => Promise<TaskResult>): Entry {
    const result: TaskResult = { taskId, command, state: 'running', startedAt: new Date().toISOString() };
    const entry: Entry = { result, done: Promise.resolve(result) };
    entry.done = work().then((r) => {
      entry.result = r;
      entry.expiresAt = Date.now() + this.retentionMs;
      return r;
    });
    this.entries.set(taskId, entry);
    return entry;
  }

  gc(now = Date.now()): void {
    for (const [id, e] of this.entries) if (e.expiresAt !== undefined && e.expiresAt <= now) this.entries.delete(id);
  }

  close(): void {
    clearInterval(this.timer);
  }

  get size(): number {
    return this.entries.size;
  }
}
