// startTimeOf: the start time that, with the pid, names one process (the flat apply's check that
// the dnsmasq it verified is still the one running, not a reused pid).
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTimeOf } from '../../../vrouteragent/dnsmasq.js';

describe('vrouteragent startTimeOf', () => {
  it('is stable for a running process and differs between processes started apart', async () => {
    const self = startTimeOf(process.pid);
    assert.match(self ?? '', /^\d+$/);
    assert.equal(startTimeOf(process.pid), self);
    // a process whose command name has spaces and parentheses: counted from the last ')'
    await new Promise((r) => setTimeout(r, 30)); // > 1 clock tick after this process started
    const dir = mkdtempSync(join(tmpdir(), 'tstack-st-'));
    const bin = join(dir, 'a (b) c');
    copyFileSync('/bin/sleep', bin);
    const child = spawn(bin, ['5'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const t = startTimeOf(child.pid!);
      assert.match(t ?? '', /^\d+$/);
      assert.ok(Number(t) > Number(self), `child ${t} after self ${self}`);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
    await new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(startTimeOf(child.pid!), undefined, 'gone once it exited');
  });

  it('is undefined for a pid that runs nothing', () => {
    assert.equal(startTimeOf(2 ** 22 + 12345), undefined);
  });
});
