// Benchmark: provisioning a bare-metal machine end to end through the tstack API against doing the
// same by hand, on the same simulated machine (`scripts/aio add-baremetal` against a whole cloud:
// test/harness/baremetal-cloud.ts, as the e2e test).
//   scripts/bench/baremetal-provision [--runs N]     (default 3 rounds)
// tstack: POST /v1/baremetal-instances {chassisUuid, imageUuid, sshKey} (the test guest image); the
// phases are read off the machine's serial console as it goes (polled every 100 ms; the file
// restarts with every power-on): PXE boot (request → the deploy ramdisk's first line), image write
// (→ its successful report), reboot (→ the guest's TINYGUEST-READY from its own disk), SSH up
// (→ an SSH banner on the address it printed); then a login with the injected key (not timed)
// and DELETE (wipe; not timed).
// By hand: the BMC powers the machine off, `qemu-img convert` writes the same image onto its disk
// file, ipmitool sets the boot device to disk and powers it on; phases image write, boot (→
// TINYGUEST-READY; DHCP from the PXE server's range), SSH up (→ banner). No config drive: the by-hand
// guest has no key, hence the banner as "SSH up" for both.
// Prints every round's phases, the medians, and as the last line `ratio: X` (tstack / by hand).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { exec } from '../../shared/exec.js';
import { Cleanup } from '../../test/harness/cleanup.js';
import { guestImage, makeSshKey, sshRun } from '../../test/harness/guest.js';
import { tmpDir } from '../../test/harness/tmp.js';
import { ok, settle, startBaremetalCloud } from '../../test/harness/baremetal-cloud.js';
import { median, runsFlag } from './stats.js';

const RUNS = runsFlag(3);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Watches a serial log for markers in order and records when each was first seen (ms since t0). */
function watchSerial(file: string, markers: Array<[string, RegExp]>, t0: number): { seen: Record<string, number>; line: Record<string, string>; stop(): void } {
  const seen: Record<string, number> = {};
  const line: Record<string, string> = {};
  const timer = setInterval(() => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return;
    }
    for (const [name, re] of markers) {
      if (seen[name] !== undefined) continue;
      const l = text.split(/\r?\n/).find((x) => re.test(x));
      if (l !== undefined) {
        seen[name] = Date.now() - t0;
        line[name] = l;
      }
    }
  }, 100);
  return { seen, line, stop: () => clearInterval(timer) };
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** An SSH banner on ip:22 (sshd up), without logging in. */
function sshBanner(ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: ip, port: 22, timeout: 2_000 });
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.once('data', (d) => done(d.toString().startsWith('SSH-')));
    s.once('error', () => done(false));
    s.once('timeout', () => done(false));
  });
}

const ipOf = (readyLine: string): string => {
  const ip = /ip=(\d+\.\d+\.\d+\.\d+)/.exec(readyLine)?.[1];
  if (!ip) throw new Error(`no address in ${readyLine}`);
  return ip;
};

async function main(): Promise<void> {
  const cleanup = new Cleanup();
  const onSignal = (): void => void cleanup.run().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const img = await guestImage();
    const cloud = await startBaremetalCloud(cleanup, { machineMemMiB: 512, machineCpus: 1, machineDisk: '2G' });
    const { api } = cloud;
    const work = await tmpDir('bench-bm', cleanup);
    const key = await makeSshKey(join(work, 'keys'));
    const bs = await ok(api, '/v1/backup-storage', { name: 'bench-bs', hostname: '127.0.0.1', url: join(work, 'bs') });
    await ok(api, `/v1/zones/${cloud.ids.zone}/actions`, { attachBackupStorage: { backupStorageUuid: bs.uuid } });
    const image = await ok(api, '/v1/images', { name: 'bench-guest', url: `file://${img.qcow2}`, format: 'qcow2', backupStorageUuids: [bs.uuid] });
    await cloud.aio('add-baremetal', '1');
    const ch = (await api.get('/v1/baremetal-chassis?q=name=aio-bm-1')).body.inventories[0];
    await ok(api, `/v1/baremetal-chassis/${ch.uuid}/actions`, { inspect: { timeoutSec: 600 } }); // provisioning needs the hardware
    const dir = cloud.machineDir(1);
    const serial = join(dir, 'serial.log');
    const bmcPw = readFileSync(join(dir, 'bmc-password'), 'utf8');
    const ipmi = (...args: string[]) => exec('ipmitool', ['-I', 'lanplus', '-C', '3', '-E', '-H', '127.0.0.1', '-p', String(ch.ipmiPort), '-U', 'admin', ...args], { env: { IPMI_PASSWORD: bmcPw }, timeoutMs: 30_000 });
    const totals = { tstack: [] as number[], hand: [] as number[] };
    const fmt = (seen: Record<string, number>, phases: string[]): string => {
      let prev = 0;
      return phases
        .map((p) => {
          const at = seen[p];
          if (at === undefined) return `${p} ?`;
          const s = `${p} ${((at - prev) / 1000).toFixed(1)} s`;
          prev = at;
          return s;
        })
        .join(', ');
    };

    for (let i = 1; i <= RUNS; i++) {
      // tstack
      {
        const t0 = Date.now();
        const w = watchSerial(serial, [
          ['pxe-boot', /tstack-deploy\[/],
          ['image-write', /tstack-deploy.*report \{"ok":true/],
          ['reboot', /TINYGUEST-READY/],
        ], t0);
        const r = await api.post('/v1/baremetal-instances', { name: `bench-${i}`, chassisUuid: ch.uuid, imageUuid: image.uuid, sshKey: key.pubKey });
        if (r.status >= 300 && r.status !== 202) throw new Error(`POST /v1/baremetal-instances: ${r.status} ${JSON.stringify(r.body)}`);
        const inst = r.status === 202 ? undefined : r.body;
        const ready = await waitFor('TINYGUEST-READY from the machine\'s disk', () => w.line.reboot, 900_000);
        const ip = ipOf(ready);
        await waitFor('SSH banner', async () => ((await sshBanner(ip)) ? true : undefined), 300_000);
        w.seen['ssh-up'] = Date.now() - t0;
        w.stop();
        const job = await settle(api, r);
        if (job.state !== 'Succeeded') throw new Error(`provisioning: ${JSON.stringify(job.error ?? job)}`);
        const uuid = (inst ?? job.result).uuid as string;
        await sshRun({ host: ip, key: key.priv, cmd: 'true', timeoutMs: 60_000 }); // the injected key logs in
        totals.tstack.push(w.seen['ssh-up']);
        console.log(`round ${i} tstack:  ${fmt(w.seen, ['pxe-boot', 'image-write', 'reboot', 'ssh-up'])}; total ${(w.seen['ssh-up'] / 1000).toFixed(1)} s`);
        const phases = (await api.get(`/v1/baremetal-instances/${uuid}`)).body.phases;
        if (phases) console.log(`round ${i} tstack phases as the controller recorded them: ${JSON.stringify(phases)}`);
        const d = await settle(api, await api.del(`/v1/baremetal-instances/${uuid}`));
        if (d.state !== 'Succeeded') throw new Error(`delete: ${JSON.stringify(d.error ?? d)}`);
      }
      // by hand
      {
        await ipmi('chassis', 'power', 'off');
        await waitFor('power off', () => (existsPid(join(dir, 'qemu.pid')) ? undefined : true), 30_000);
        const t0 = Date.now();
        await exec('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', img.qcow2, join(dir, 'disk.qcow2')], { timeoutMs: 300_000 });
        const seen: Record<string, number> = { 'image-write': Date.now() - t0 };
        await ipmi('chassis', 'bootdev', 'disk');
        const w = watchSerial(serial, [['boot', /TINYGUEST-READY/]], t0);
        await ipmi('chassis', 'power', 'on');
        const ready = await waitFor('TINYGUEST-READY', () => w.line.boot, 600_000);
        const ip = ipOf(ready);
        await waitFor('SSH banner', async () => ((await sshBanner(ip)) ? true : undefined), 300_000);
        w.stop();
        seen.boot = w.seen.boot!;
        seen['ssh-up'] = Date.now() - t0;
        totals.hand.push(seen['ssh-up']);
        console.log(`round ${i} by hand: ${fmt(seen, ['image-write', 'boot', 'ssh-up'])}; total ${(seen['ssh-up'] / 1000).toFixed(1)} s`);
        await ipmi('chassis', 'power', 'off');
        await waitFor('power off', () => (existsPid(join(dir, 'qemu.pid')) ? undefined : true), 30_000);
      }
    }
    const [mt, mh] = [median(totals.tstack), median(totals.hand)];
    console.log(`median tstack (API → SSH up): ${(mt / 1000).toFixed(1)} s`);
    console.log(`median by hand (qemu-img + BMC → SSH up): ${(mh / 1000).toFixed(1)} s`);
    console.log(`ratio: ${(mt / mh).toFixed(2)}`);
  } finally {
    await cleanup.run();
  }
}

function existsPid(file: string): boolean {
  try {
    process.kill(Number(readFileSync(file, 'utf8')), 0);
    return true;
  } catch {
    return false;
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
