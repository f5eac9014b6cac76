// A router's IPsec connections as part of its desired state (RouterSpec.ipsec): every connection
// served by the router, with its VIP's address, its CIDRs, algorithms and key.
import type { RouterIpsecConnectionT } from '../../shared/protocol/ipsec.js';
import type { InventoryStore, Resource } from '../store/types.js';

export async function routerIpsec(store: InventoryStore, router: Resource): Promise<RouterIpsecConnectionT[]> {
  const out: RouterIpsecConnectionT[] = [];
  for (const c of (await store.list({ kind: 'ipsec-connection', filters: [{ field: 'vpcRouterUuid', op: '=', value: router.uuid }] })).items) {
    const vip = await store.get(String(c.vipUuid));
    if (!vip || vip.kind !== 'vip' || typeof c._authKey !== 'string') continue;
    out.push({
      connectionUuid: c.uuid,
      vip: String(vip.ip),
      peerAddress: String(c.peerAddress),
      localCidrs: c.localCidrs as string[],
      peerCidrs: c.peerCidrs as string[],
      psk: c._authKey,
      ikeVersion: c.ikeVersion as RouterIpsecConnectionT['ikeVersion'],
      ikeAuthAlgorithm: c.ikeAuthAlgorithm as RouterIpsecConnectionT['ikeAuthAlgorithm'],
      ikeEncryptionAlgorithm: c.ikeEncryptionAlgorithm as RouterIpsecConnectionT['ikeEncryptionAlgorithm'],
      ikeDhGroup: Number(c.ikeDhGroup) as RouterIpsecConnectionT['ikeDhGroup'],
      policyAuthAlgorithm: c.policyAuthAlgorithm as RouterIpsecConnectionT['policyAuthAlgorithm'],
      policyEncryptionAlgorithm: c.policyEncryptionAlgorithm as RouterIpsecConnectionT['policyEncryptionAlgorithm'],
      pfs: c.pfs as RouterIpsecConnectionT['pfs'],
    });
  }
  return out;
}
