// One structured logger (pino) for every daemon; child loggers carry component and task ids.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

let root: Logger = pino({
  level: process.env.TSTACK_LOG_LEVEL ?? 'info',
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
});

export function setLogLevel(level: string): void {
  root.level = level as LevelWithSilent;
}

export function logger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return root.child({ component, ...bindings });
}

/** Replace the root logger (tests silence it or send it to a file). */
export function setRootLogger(l: Logger): void {
  root = l;
}
