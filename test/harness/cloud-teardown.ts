// Teardown of a cloud that a test built through the API on real hosts (e2e files):
//   cleanup.add(() => removeControllerKey(c.dataDir), "controller key in root's authorized_keys");
//   cleanup.add(() => expungeCloud(api), 'cloud resources');
// expungeCloud asks the API what exists instead of trusting the test's own bookkeeping: a VM the
// test did not record (HA restarts, a test that failed half-way) still holds its domain and keeps
// its L3's namespace alive (an L3 with NICs cannot be deleted).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApiClient } from './controller.js';

async function list(api: ApiClient, path: string): Promise<any[]> {
  const r = await api.get(`${path}?limit=10000`);
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.inventories ?? [];
}

/** Delete and expunge every VM, then delete every L3 and L2 network. Logs what failed; never throws. */
export async function expungeCloud(api: ApiClient): Promise<void> {
  const failed: string[] = [];
  const step = async (what: string, call: () => Promise<{ status: number; body: any }>): Promise<void> => {
    try {
      const r = await call();
      if (r.status >= 300 && r.status !== 404) failed.push(`${what}: ${r.status} ${r.body?.message ?? ''}`);
    } catch (e) {
      failed.push(`${what}: ${(e as Error).message}`);
    }
  };
  const listed = async (path: string): Promise<any[]> =>
    list(api, path).catch((e: Error) => {
      failed.push(e.message);
      return [];
    });
  for (const vm of await listed('/v1/vm-instances')) {
    if (vm.state !== 'Destroyed') await step(`delete VM ${vm.name}`, () => api.del(`/v1/vm-instances/${vm.uuid}?wait=true`));
    await step(`expunge VM ${vm.name}`, () => api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} }));
  }
  for (const l3 of await listed('/v1/l3-networks')) await step(`delete L3 ${l3.name}`, () => api.del(`/v1/l3-networks/${l3.uuid}?wait=true`));
  // pools last: their VXLAN networks go first (cascade covers any the listing put after the pool)
  const l2s = await listed('/v1/l2-networks');
  l2s.sort((a, b) => Number(a.type === 'VxlanNetworkPool') - Number(b.type === 'VxlanNetworkPool'));
  for (const l2 of l2s) await step(`delete L2 ${l2.name}`, () => api.del(`/v1/l2-networks/${l2.uuid}?cascade=true&wait=true`));
  if (failed.length) process.stderr.write(`cleanup: cloud resources left behind: ${failed.join('; ')}\n`);
}

/** Adding a host authorizes the controller's own key in root's authorized_keys (for reconnects): take it away. */
export function removeControllerKey(dataDir: string): void {
  const pub = join(dataDir, 'ssh', 'id_ed25519.pub');
  if (!existsSync(pub)) return;
  const k = readFileSync(pub, 'utf8').trim().split(/\s+/)[1]!;
  const f = '/root/.ssh/authorized_keys';
  writeFileSync(f, readFileSync(f, 'utf8').split('\n').filter((l) => !l.includes(k)).join('\n'), { mode: 0o600 });
}
