// A router's load-balancer listeners as part of its desired state (RouterSpec.loadBalancers):
// every listener of every enabled load balancer served by the router, with the addresses of its
// backend NICs (NICs that are gone are skipped; stopped VMs stay: haproxy's checks take them out)
// and, for https, the certificate file.
import type { RouterLbListenerT } from '../../shared/protocol/lb.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { haproxyPem } from './certificate.js';

export async function routerListeners(store: InventoryStore, router: Resource): Promise<RouterLbListenerT[]> {
  const out: RouterLbListenerT[] = [];
  const lbs = (await store.list({ kind: 'load-balancer', filters: [{ field: 'vpcRouterUuid', op: '=', value: router.uuid }] })).items;
  for (const lb of lbs) {
    if (lb.state === 'Disabled' || typeof lb.vipIp !== 'string') continue;
    for (const l of await store.byParent('load-balancer-listener', lb.uuid)) {
      const backends: RouterLbListenerT['backends'] = [];
      for (const u of (l.vmNicUuids as string[] | undefined) ?? []) {
        const nic = await store.get(u);
        if (nic && nic.kind === 'vm-nic' && typeof nic.ip === 'string') backends.push({ vmNicUuid: nic.uuid, ip: nic.ip });
      }
      const x: RouterLbListenerT = {
        listenerUuid: l.uuid,
        vip: lb.vipIp,
        protocol: l.protocol as RouterLbListenerT['protocol'],
        port: Number(l.loadBalancerPort),
        instancePort: Number(l.instancePort),
        algorithm: l.balancerAlgorithm as RouterLbListenerT['algorithm'],
        idleTimeoutSec: Number(l.connectionIdleTimeout),
        healthyThreshold: Number(l.healthyThreshold),
        unhealthyThreshold: Number(l.unhealthyThreshold),
        healthCheckIntervalSec: Number(l.healthCheckInterval),
        healthCheckTimeoutSec: Number(l.healthCheckTimeout),
        healthCheckTarget: String(l.healthCheckTarget),
        maxConnection: Number(l.maxConnection),
        backends,
      };
      if (l.protocol === 'https') {
        const c = typeof l.certificateUuid === 'string' ? await store.get(l.certificateUuid) : undefined;
        if (!c) continue; // refused at create; a certificate is not deleted while in use
        x.certificate = { certificateUuid: c.uuid, pem: haproxyPem(c) };
      }
      out.push(x);
    }
  }
  return out;
}
