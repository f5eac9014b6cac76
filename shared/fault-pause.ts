// Test-only: freeze this process at a named point so a test can SIGKILL it exactly there (a
// controller between two steps of a flow, an agent that did a command's work but has not
// answered). Inert unless TSTACK_FAULT_PAUSE is set:
//   TSTACK_FAULT_PAUSE="volume-snapshot:take,ps/snapshot/revert:done"   points to stop at
//   TSTACK_FAULT_PAUSE_FILE=/tmp/…/paused                               written with the point's
//                                                                        name once frozen there
// The freeze blocks the event loop for good (no timer, no I/O runs any more), so nothing the
// process would do after that point can happen before the kill. Never set it in production.
import { writeFileSync } from 'node:fs';

export function faultPause(point: string): void {
  const spec = process.env.TSTACK_FAULT_PAUSE;
  if (!spec || !spec.split(',').map((s) => s.trim()).includes(point)) return;
  const file = process.env.TSTACK_FAULT_PAUSE_FILE;
  if (file) writeFileSync(file, `${point}\n`);
  process.stderr.write(`TSTACK_FAULT_PAUSE: frozen at ${point} (pid ${process.pid})\n`);
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(cell, 0, 0);
}
