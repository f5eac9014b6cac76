// IPMI through ipmitool (lanplus, cipher suite 3: without -C 3 every call first spends ~10 s
// on "Unable to Get Channel Cipher Suites"). The password goes in the environment (-E), never
// on the command line. ipmitool says "Unable to establish IPMI v2 / RMCP+ session" for a wrong
// password and for a dead address alike; with -v it says which (RAKP 2 … vs Get Auth
// Capabilities), and classifyIpmiFailure turns that into a typed error naming the step.
import { exec } from '../../shared/exec.js';
import { TStackError } from '../../shared/errors.js';
import type { Static } from '../../shared/protocol/schema.js';
import type { BmcTarget, BootDevice, PowerOp } from '../../shared/protocol/baremetal.js';

export type Bmc = Static<typeof BmcTarget>;

export interface IpmiOptions {
  /** Seconds ipmitool waits for one answer (-N) and how often it retries (-R): an unreachable BMC fails after about N × (R + 1) s. */
  timeoutSec?: number;
  retries?: number;
  signal?: AbortSignal;
}

/** The arguments of one ipmitool call (the password is not among them). */
export function ipmitoolArgs(bmc: Bmc, cmd: readonly string[], o: IpmiOptions = {}): string[] {
  return ['-I', 'lanplus', '-C', '3', '-H', bmc.address, '-p', String(bmc.port), '-U', bmc.username, '-E', '-N', String(o.timeoutSec ?? 2), '-R', String(o.retries ?? 1), '-v', ...cmd];
}

/** A failed ipmitool call as a typed error; `step` is the operation (powerOn, setBootDevice…). */
export function classifyIpmiFailure(step: string, bmc: Bmc, stderr: string): TStackError {
  const where = `${bmc.address}:${bmc.port}`;
  const details = { step, bmc: where, stderr: stderr.slice(-2000) };
  if (/RAKP 2 HMAC is invalid|unauthorized name|invalid (user ?name|password)|RAKP \d message indicates an error/i.test(stderr)) {
    return new TStackError('IPMI_AUTH_FAILED', `${step}: the BMC at ${where} refused user '${bmc.username}' (wrong username or password); update the chassis credentials`, details);
  }
  if (/Get Auth Capabilities error|Error issuing Get Channel Authentication|No response|Connection refused|Name or service not known|Address lookup/i.test(stderr)) {
    return new TStackError('BMC_UNREACHABLE', `${step}: no answer from the BMC at ${where}; check ipmiAddress/ipmiPort and that the host can reach the BMC network`, details);
  }
  const last = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('Loading IANA')).slice(-1)[0] ?? 'ipmitool failed';
  return new TStackError('IPMI_ERROR', `${step}: the BMC at ${where} failed: ${last}`, details);
}

/** "Chassis Power is on" → 'on'. */
export function parsePowerState(stdout: string): 'on' | 'off' | undefined {
  const m = /Chassis Power is (on|off)/i.exec(stdout);
  return m ? (m[1]!.toLowerCase() as 'on' | 'off') : undefined;
}

async function ipmitool(step: string, bmc: Bmc, cmd: readonly string[], o: IpmiOptions): Promise<string> {
  const budgetMs = ((o.timeoutSec ?? 2) * ((o.retries ?? 1) + 1) + 5) * 1000;
  try {
    const r = await exec('ipmitool', ipmitoolArgs(bmc, cmd, o), { env: { IPMI_PASSWORD: bmc.password }, timeoutMs: budgetMs, quiet: true, ...(o.signal ? { signal: o.signal } : {}) });
    return r.stdout;
  } catch (e) {
    const err = TStackError.from(e);
    if (err.code === 'TIMEOUT' || err.code === 'CANCELLED') throw new TStackError(err.code, `${step}: ${err.message}`, { step, bmc: `${bmc.address}:${bmc.port}` });
    throw classifyIpmiFailure(step, bmc, String(err.details?.stderr ?? err.message));
  }
}

const STEP: Record<PowerOp, string> = { on: 'powerOn', off: 'powerOff', reset: 'powerReset', status: 'powerStatus' };

/** Power on/off/reset (then read back) or just read the state the BMC reports. */
export async function ipmiPower(bmc: Bmc, op: PowerOp, o: IpmiOptions = {}): Promise<{ powerState: 'on' | 'off' }> {
  const step = STEP[op];
  if (op === 'on' || op === 'off') {
    // a BMC whose power hook is slow (a loaded host) can answer after ipmitool gave up
    // ("IPMI Request Match NOT FOUND"): what counts is the state it reports afterwards
    await ipmitool(step, bmc, ['chassis', 'power', op], o).catch(async (e: unknown) => {
      if (TStackError.from(e).code !== 'IPMI_ERROR') throw e;
      await new Promise((r) => setTimeout(r, 1000));
      if (parsePowerState(await ipmitool(step, bmc, ['chassis', 'power', 'status'], o)) !== op) throw e;
    });
  } else if (op !== 'status') await ipmitool(step, bmc, ['chassis', 'power', op], o);
  const out = await ipmitool(step, bmc, ['chassis', 'power', 'status'], o);
  const powerState = parsePowerState(out);
  if (!powerState) throw new TStackError('IPMI_ERROR', `${step}: the BMC at ${bmc.address}:${bmc.port} answered no power state: ${out.trim().slice(0, 200)}`, { step });
  return { powerState };
}

/** Persistent boot device: pxe (network) or disk. */
export async function ipmiBootDevice(bmc: Bmc, device: BootDevice, o: IpmiOptions = {}): Promise<{ device: BootDevice }> {
  await ipmitool('setBootDevice', bmc, ['chassis', 'bootdev', device, 'options=persistent'], o);
  return { device };
}
