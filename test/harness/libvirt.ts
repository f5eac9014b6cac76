// libvirtd + virtlogd for tests (started directly where there is no systemd). Never starts
// libvirt's 'default' network: it NATs toward the uplink.
import { existsSync, mkdirSync } from 'node:fs';
import { exec, execOk, execOut } from '../../shared/exec.js';

export const LIBVIRT_URI = 'qemu:///system';

async function running(name: string): Promise<boolean> {
  return execOk('pgrep', ['-x', name]);
}

/** Make sure virtlogd and libvirtd run and answer on qemu:///system. */
export async function ensureLibvirt(): Promise<void> {
  if (await execOk('virsh', ['-c', LIBVIRT_URI, 'version'], { timeoutMs: 15_000 })) return;
  if (existsSync('/run/systemd/system')) {
    await exec('systemctl', ['start', 'virtlogd', 'libvirtd'], { timeoutMs: 60_000 });
  } else {
    mkdirSync('/run/libvirt', { recursive: true });
    mkdirSync('/var/log/libvirt', { recursive: true });
    if (!(await running('virtlogd'))) await exec('virtlogd', ['-d'], { timeoutMs: 15_000 });
    if (!(await running('libvirtd'))) await exec('libvirtd', ['-d'], { timeoutMs: 30_000 });
  }
  const deadline = Date.now() + 30_000;
  while (!(await execOk('virsh', ['-c', LIBVIRT_URI, 'version'], { timeoutMs: 10_000 }))) {
    if (Date.now() > deadline) throw new Error('libvirtd did not come up (virsh -c qemu:///system version fails)');
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** virsh -c qemu:///system <args>, trimmed stdout. */
export async function virsh(args: string[], timeoutMs = 60_000): Promise<string> {
  return execOut('virsh', ['-c', LIBVIRT_URI, ...args], { timeoutMs, errorCode: 'LIBVIRT_ERROR' });
}

/** Names of all domains (running or defined) that start with prefix. */
export async function domainsWithPrefix(prefix: string): Promise<string[]> {
  const out = await virsh(['list', '--all', '--name']);
  return out
    .split('\n')
    .map((s) => s.trim())
    .filter((n) => n && n.startsWith(prefix));
}

/** Destroy (and undefine, if persistent) every domain whose name starts with prefix. */
export async function destroyDomainsWithPrefix(prefix: string): Promise<void> {
  if (!prefix) throw new Error('destroyDomainsWithPrefix: empty prefix');
  for (const name of await domainsWithPrefix(prefix)) {
    await execOk('virsh', ['-c', LIBVIRT_URI, 'destroy', name], { timeoutMs: 60_000 });
    await execOk('virsh', ['-c', LIBVIRT_URI, 'undefine', name, '--nvram'], { timeoutMs: 30_000 }).then(
      async (ok) => ok || execOk('virsh', ['-c', LIBVIRT_URI, 'undefine', name], { timeoutMs: 30_000 }),
    );
  }
}
