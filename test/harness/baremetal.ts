// A simulated bare-metal machine for tests: a QEMU (TCG) machine behind a real BMC, ipmi_sim,
// listening for IPMI-over-LAN on 127.0.0.1:<free port>. ipmi_sim's VM codec (ipmi-bmc-extern)
// refuses boot-device commands ("Set Chassis Boot Parameter 5 failed: Invalid data field"), so
// the BMC drives the machine through its chassis_control hook instead: power on starts QEMU
// with the boot order the BMC holds (pxe → network, else disk), power off kills it, reset
// restarts it; `chassis power status` is whether the QEMU process lives. The BMC and its hook
// are scripts/baremetal/sim-machine's (shared with `scripts/aio add-baremetal`). Everything lives
// in a /tmp/<runId>-… directory (the sweeper finds a leaked QEMU by it) and stops on cleanup.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { exec } from '../../shared/exec.js';
import type { Cleanup } from './cleanup.js';
import { REPO_ROOT } from './guest.js';
import { freePort } from './ports.js';
import { tmpDir } from './tmp.js';

export interface BmcOptions {
  /** QEMU arguments of the machine (memory, CPUs, disks, NICs); the harness adds -boot, serial, pidfile. */
  qemuArgs?: string[];
  username?: string;
  password?: string;
}

export interface SimulatedMachine {
  address: string;
  port: number;
  username: string;
  password: string;
  dir: string;
  serialLog: string;
  /** What the BMC reports as power: the QEMU process runs or is being started. */
  poweredOn(): boolean;
  /** Wait until the QEMU process runs (the BMC starts it in the background); its command line. */
  whenRunning(timeoutMs?: number): Promise<string>;
  /** What the BMC holds as boot device (pxe, default, …). */
  bootDevice(): string;
  /** The QEMU command line of the current power-on, if on. */
  qemuCmdline(): string | undefined;
  stop(): Promise<void>;
}

/** scripts/baremetal/sim-machine: the BMC and its hook, shared with `scripts/aio add-baremetal`. */
export const SIM_MACHINE = join(REPO_ROOT, 'scripts/baremetal/sim-machine');

/** Start a BMC (ipmi_sim) for a QEMU machine that is powered off. */
export async function startSimulatedMachine(cleanup: Cleanup, o: BmcOptions = {}): Promise<SimulatedMachine> {
  const dir = await tmpDir('bmc', cleanup);
  const port = await freePort();
  const username = o.username ?? 'admin';
  const password = o.password ?? 'bmc-pass-1';
  const stop = async (): Promise<void> => void (await exec(SIM_MACHINE, ['stop', dir], { timeoutMs: 20_000 }));
  cleanup.add(stop, `simulated bare-metal machine in ${dir}`);
  await exec(SIM_MACHINE, ['start', dir, String(port), username, password, ...(o.qemuArgs ?? [])], { timeoutMs: 20_000 });
  return simulatedMachineIn(dir, { address: '127.0.0.1', port, username, password }, stop);
}

/** A view of a machine made by sim-machine in `dir` (by a test, or by scripts/aio add-baremetal). */
export function simulatedMachineIn(dir: string, bmc: { address: string; port: number; username: string; password: string }, stop: () => Promise<void>): SimulatedMachine {
  const pidFile = join(dir, 'qemu.pid');
  const qemuPid = (): number | undefined => {
    if (!existsSync(pidFile)) return undefined;
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    try {
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  };
  return {
    ...bmc,
    dir,
    serialLog: join(dir, 'serial.log'),
    poweredOn: () => qemuPid() !== undefined || (existsSync(join(dir, 'starting')) && !existsSync(join(dir, 'off'))),
    whenRunning: async (timeoutMs = 60_000) => {
      for (const end = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 100))) {
        const pid = qemuPid();
        if (pid !== undefined && !existsSync(join(dir, 'starting'))) return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
        if (Date.now() > end) throw new Error(`the machine in ${dir} did not start within ${timeoutMs} ms: ${readFileSync(join(dir, 'qemu.out'), 'utf8').slice(-500)}`);
      }
    },
    bootDevice: () => (existsSync(join(dir, 'boot.dev')) ? readFileSync(join(dir, 'boot.dev'), 'utf8').trim() : 'default'),
    qemuCmdline: () => {
      const pid = qemuPid();
      return pid ? readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ') : undefined;
    },
    stop,
  };
}

/** QEMU arguments of a simulated machine: a virtio NIC on `tap` with `mac`, an empty raw virtio disk (created here when missing). */
export function machineQemuArgs(o: { tap: string; mac: string; disk: string; diskSize?: string; memoryMiB?: number; cpus?: number }): string[] {
  if (!existsSync(o.disk)) execFileSync('truncate', ['-s', o.diskSize ?? '1G', o.disk]);
  return ['-accel', 'tcg', '-machine', 'pc', '-m', String(o.memoryMiB ?? 256), '-smp', String(o.cpus ?? 1), '-nodefaults', '-netdev', `tap,id=n0,ifname=${o.tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n0,mac=${o.mac}`, '-drive', `file=${o.disk},format=raw,if=virtio`];
}

/** The bare-metal ramdisks (vmlinuz, inspect.img, deploy.img) built into a fresh temp dir (scripts/baremetal/build-ramdisk.sh). */
export async function buildRamdisks(cleanup: Cleanup): Promise<string> {
  return execFileSync(join(REPO_ROOT, 'scripts/baremetal/build-ramdisk.sh'), [await tmpDir('ramdisk', cleanup)], { encoding: 'utf8' }).trim();
}
