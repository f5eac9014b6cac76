// A simulated bare-metal machine for tests: a QEMU (TCG) machine behind a real BMC, ipmi_sim,
// listening for IPMI-over-LAN on 127.0.0.1:<free port>. ipmi_sim's VM codec (ipmi-bmc-extern)
// refuses boot-device commands ("Set Chassis Boot Parameter 5 failed: Invalid data field"), so
// the BMC drives the machine through its chassis_control hook instead: power on starts QEMU
// with the boot order the BMC holds (pxe → network, else disk), power off kills it, reset
// restarts it; `chassis power status` is whether the QEMU process lives. Everything lives in
// a /tmp/<runId>-… directory (the sweeper finds a leaked QEMU by it) and stops on cleanup.
import { readFileSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, type RunningProcess } from '../../shared/exec.js';
import type { Cleanup } from './cleanup.js';
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
  /** The QEMU process of the machine runs (what the BMC reports as power). */
  poweredOn(): boolean;
  /** What the BMC holds as boot device (pxe, default, …). */
  bootDevice(): string;
  /** The QEMU command line of the current power-on, if on. */
  qemuCmdline(): string | undefined;
  stop(): Promise<void>;
}

const hook = (dir: string): string => `#!/bin/sh
# ipmi_sim chassis_control hook: <mc> get|set|check parm [val]...
D=${dir}; BT=$D/boot.dev; PF=$D/qemu.pid
[ -f $BT ] || echo default > $BT
alive() { [ -f $PF ] && kill -0 "$(cat $PF)" 2>/dev/null; }
start() {
  alive && return 0
  case "$(cat $BT)" in pxe) o=n;; *) o=c;; esac
  # one argument per line in qemu.args (test paths have no spaces)
  qemu-system-x86_64 $(cat $D/qemu.args) -boot order=$o -serial file:$D/serial.log -display none -vga none -daemonize -pidfile $PF >>$D/qemu.out 2>&1
}
stop() {
  alive && kill "$(cat $PF)"
  i=0; while alive && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  alive && kill -9 "$(cat $PF)"; rm -f $PF
}
echo "$(date +%T.%N) $*" >> $D/hook.log
dev=$1; op=$2; shift 2
case $op in
  get) for p in "$@"; do case $p in boot) echo "boot:$(cat $BT)";; power) if alive; then echo power:1; else echo power:0; fi;; *) echo "Invalid parameter: $p"; exit 1;; esac; done ;;
  set) while [ -n "$1" ]; do p=$1; v=$2; shift 2
    case $p in power) if [ "$v" = 1 ]; then start; else stop; fi;; reset) stop; start;; boot) echo "$v" > $BT;; identify) ;; *) echo "Invalid parameter: $p"; exit 1;; esac; done ;;
  check) exit 1 ;;
  *) echo "Unknown operation: $op"; exit 1 ;;
esac
`;

/** Start a BMC (ipmi_sim) for a QEMU machine that is powered off. */
export async function startSimulatedMachine(cleanup: Cleanup, o: BmcOptions = {}): Promise<SimulatedMachine> {
  const dir = await tmpDir('bmc', cleanup);
  const port = await freePort();
  const username = o.username ?? 'admin';
  const password = o.password ?? 'bmc-pass-1';
  const qemuArgs = o.qemuArgs ?? ['-accel', 'tcg', '-machine', 'pc', '-m', '64', '-smp', '1', '-nodefaults', '-nic', 'none'];
  writeFileSync(join(dir, 'qemu.args'), qemuArgs.join('\n') + '\n');
  writeFileSync(join(dir, 'ctl.sh'), hook(dir));
  chmodSync(join(dir, 'ctl.sh'), 0o755);
  writeFileSync(join(dir, 'bmc.emu'), 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n');
  writeFileSync(
    join(dir, 'lan.conf'),
    [
      'name "tsbmc"',
      'set_working_mc 0x20',
      '  startlan 1',
      `    addr 127.0.0.1 ${port}`,
      '    priv_limit admin',
      ...['callback', 'user', 'operator', 'admin'].map((p) => `    allowed_auths_${p} none md2 md5 straight`),
      '    guid a123456789abcdefa123456789abcdef',
      '  endlan',
      `  chassis_control "${join(dir, 'ctl.sh')} 0x20"`,
      `  user 2 true "${username}" "${password}" admin 10 none md2 md5 straight`,
      '',
    ].join('\n'),
  );
  const sim: RunningProcess = await startProcess('ipmi_sim', ['-n', '-c', join(dir, 'lan.conf'), '-f', join(dir, 'bmc.emu'), '-s', dir], { logFile: join(dir, 'ipmi_sim.log') });
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
  const stop = async (): Promise<void> => {
    await sim.stop(2_000);
    const pid = qemuPid();
    if (pid) process.kill(pid, 'SIGKILL');
  };
  cleanup.add(stop, `simulated bare-metal machine in ${dir}`);
  await waitForUdp(dir, sim);
  return {
    address: '127.0.0.1',
    port,
    username,
    password,
    dir,
    serialLog: join(dir, 'serial.log'),
    poweredOn: () => qemuPid() !== undefined,
    bootDevice: () => (existsSync(join(dir, 'boot.dev')) ? readFileSync(join(dir, 'boot.dev'), 'utf8').trim() : 'default'),
    qemuCmdline: () => {
      const pid = qemuPid();
      return pid ? readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ') : undefined;
    },
    stop,
  };
}

/** ipmi_sim listens on UDP and logs nothing at start: give it a moment, then check it still runs. */
async function waitForUdp(dir: string, sim: RunningProcess): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
  if (!sim.running) throw new Error(`ipmi_sim exited: ${readFileSync(join(dir, 'ipmi_sim.log'), 'utf8').slice(-500)}`);
}
