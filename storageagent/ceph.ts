// Thin wrappers around the rbd / ceph CLIs for one cluster connection (conf + user + pool).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, execOk } from '../shared/exec.js';
import { TStackError } from '../shared/errors.js';
import { checkName } from './paths.js';
import type { Capacity } from '../shared/protocol/storage.js';

export interface CephConnSpec {
  pool: string;
  confPath?: string;
  user?: string;
  monitors?: string[];
  secretUuid?: string;
}

export interface RbdSnap {
  id: number;
  name: string;
  size: number;
  protected: string | boolean;
}

const monCache = new Map<string, string[]>();

export class Ceph {
  readonly pool: string;
  readonly user: string;
  readonly conf: string;
  constructor(readonly spec: CephConnSpec) {
    this.pool = checkName('pool', spec.pool);
    this.user = checkName('user', spec.user ?? 'admin');
    this.conf = spec.confPath ?? '/etc/ceph/ceph.conf';
  }

  private common(): string[] {
    return ['-c', this.conf, '--id', this.user];
  }

  async rbd(args: string[], o: { signal?: AbortSignal; timeoutMs?: number; okCodes?: number[] } = {}): Promise<string> {
    const r = await exec('rbd', [...this.common(), ...args], {
      timeoutMs: o.timeoutMs ?? 600_000,
      errorCode: 'STORAGE_ERROR',
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.okCodes ? { okCodes: o.okCodes } : {}),
    });
    return r.stdout;
  }

  async ceph(args: string[], o: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<string> {
    const r = await exec('ceph', [...this.common(), '--connect-timeout', '15', ...args], {
      timeoutMs: o.timeoutMs ?? 60_000,
      errorCode: 'STORAGE_ERROR',
      ...(o.signal ? { signal: o.signal } : {}),
    });
    return r.stdout;
  }

  spec_(image: string, snap?: string): string {
    checkName('rbd image', image);
    return `${this.pool}/${image}${snap ? '@' + checkName('rbd snapshot', snap) : ''}`;
  }

  /** The rbd: string QEMU and qemu-img take. */
  qemu(image: string, snap?: string): string {
    const esc = (s: string): string => s.replace(/([:\\@])/g, '\\$1');
    return `rbd:${this.pool}/${checkName('rbd image', image)}${snap ? '@' + checkName('rbd snapshot', snap) : ''}:conf=${esc(this.conf)}:id=${this.user}`;
  }

  async exists(image: string): Promise<boolean> {
    return execOk('rbd', [...this.common(), 'info', this.spec_(image)], { timeoutMs: 60_000 });
  }

  async info(image: string): Promise<{ size: number; parent?: { pool: string; image: string; snapshot: string } }> {
    try {
      return JSON.parse(await this.rbd(['info', '--format', 'json', this.spec_(image)], { timeoutMs: 60_000 })) as { size: number };
    } catch (e) {
      if (/No such file|does not exist|\(2\)/.test(JSON.stringify((e as TStackError).details ?? {}))) {
        throw new TStackError('VOLUME_NOT_FOUND', `rbd image ${this.spec_(image)} does not exist`);
      }
      throw e;
    }
  }

  /** Bytes really used by an image (fast-diff makes this cheap). */
  async used(image: string): Promise<number> {
    const j = JSON.parse(await this.rbd(['du', '--format', 'json', this.spec_(image)], { timeoutMs: 120_000 })) as {
      images?: Array<{ name: string; snapshot?: string; used_size: number }>;
    };
    return (j.images ?? []).filter((i) => i.name === image && !i.snapshot).reduce((a, i) => a + i.used_size, 0);
  }

  async snaps(image: string): Promise<RbdSnap[]> {
    return JSON.parse(await this.rbd(['snap', 'ls', '--format', 'json', this.spec_(image)], { timeoutMs: 60_000 })) as RbdSnap[];
  }

  async images(): Promise<string[]> {
    return JSON.parse(await this.rbd(['ls', '--format', 'json', this.pool], { timeoutMs: 60_000 })) as string[];
  }

  /** Remove an image with all its snapshots (unprotecting them); false if it did not exist. */
  async remove(image: string, signal?: AbortSignal): Promise<boolean> {
    if (!(await this.exists(image))) return false;
    for (const s of await this.snaps(image)) {
      if (s.protected === 'true' || s.protected === true) await this.rbd(['snap', 'unprotect', this.spec_(image, s.name)]);
    }
    await this.rbd(['snap', 'purge', this.spec_(image)], signal ? { signal } : {});
    await this.rbd(['rm', '--no-progress', this.spec_(image)], signal ? { signal } : {});
    return true;
  }

  /** Mon addresses (host:port, v1 protocol) for VM disk sources. */
  async monitors(): Promise<string[]> {
    if (this.spec.monitors?.length) return this.spec.monitors;
    const hit = monCache.get(this.conf);
    if (hit) return hit;
    const j = JSON.parse(await this.ceph(['mon', 'dump', '--format', 'json'])) as {
      mons: Array<{ addr?: string; public_addrs?: { addrvec: Array<{ type: string; addr: string }> } }>;
    };
    const mons = j.mons.map((m) => {
      const v = m.public_addrs?.addrvec.find((a) => a.type === 'v1') ?? m.public_addrs?.addrvec[0];
      return (v?.addr ?? m.addr ?? '').replace(/\/\d+$/, '');
    });
    monCache.set(this.conf, mons);
    return mons;
  }

  async df(): Promise<{ total: number; available: number; poolStored: number; poolMaxAvail: number }> {
    const j = JSON.parse(await this.ceph(['df', '--format', 'json'])) as {
      stats: { total_bytes: number; total_avail_bytes: number };
      pools: Array<{ name: string; stats: { stored: number; max_avail: number } }>;
    };
    const p = j.pools.find((x) => x.name === this.pool);
    if (!p) throw new TStackError('STORAGE_ERROR', `ceph pool ${this.pool} does not exist; create it first (ceph osd pool create ${this.pool}; rbd pool init ${this.pool})`);
    return { total: j.stats.total_bytes, available: j.stats.total_avail_bytes, poolStored: p.stats.stored, poolMaxAvail: p.stats.max_avail };
  }

  private fsidCache?: string;
  /** The cluster's fsid (identifies the cluster across agents). */
  async fsid(): Promise<string> {
    this.fsidCache ??= (await this.ceph(['fsid'])).trim();
    return this.fsidCache;
  }

  /**
   * The libvirt secret `uuid` holds this user's cephx key (`<auth><secret type='ceph'>` in the
   * VMs' RBD disks). Defined (or updated) on every ps/init, so a rotated key reaches libvirt. The
   * key goes through a 0600 file in a private temp dir (removed at once), never argv: virsh
   * cannot read /dev/stdin when stdin is a socket, as node's pipes are.
   */
  async ensureLibvirtSecret(uuid: string): Promise<void> {
    const key = (await this.ceph(['auth', 'get-key', `client.${this.user}`])).trim();
    if (!/^[A-Za-z0-9+/=]{16,200}$/.test(key)) throw new TStackError('STORAGE_ERROR', `ceph auth get-key client.${this.user} returned no usable key`);
    const id = checkName('secret uuid', uuid);
    const xml = `<secret ephemeral='no' private='yes'><uuid>${id}</uuid><usage type='ceph'><name>tstack ${id} client.${this.user}</name></usage></secret>`;
    const dir = await mkdtemp(join(tmpdir(), 'tstack-secret-'));
    try {
      await writeFile(join(dir, 'secret.xml'), xml, { mode: 0o600 });
      await writeFile(join(dir, 'key'), key, { mode: 0o600 });
      await exec('virsh', ['secret-define', join(dir, 'secret.xml')], { timeoutMs: 30_000, errorCode: 'STORAGE_ERROR' });
      await exec('virsh', ['secret-set-value', '--secret', id, '--file', join(dir, 'key')], { timeoutMs: 30_000, errorCode: 'STORAGE_ERROR' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Capacity as primary or backup storage reports it; fails clearly when the pool is missing (df checks it). */
  async capacity(): Promise<Capacity> {
    const d = await this.df();
    return { totalCapacity: d.total, availableCapacity: d.available, usedByTstack: d.poolStored };
  }
}
