// Asserting API calls and the VPC bring-up the network tests of the fake cloud share.
//   let fc: FakeCloud;
//   const { post, act, refused, lastRouterSpec } = fakeCloudApi(() => fc);   // fc is set in before()
//   const nets = await vpcNetworks(post, fc, 'lb', 110, '198.51.100.0/24', ['10.11.0.0/24']);
//   const r = await vpcRouter(post, fc, 'lb', nets);   // offering, router, every VPC network attached
import assert from 'node:assert/strict';
import * as VPC from '../../shared/protocol/vpc.js';
import type { FakeCloud } from './fake-cloud.js';

type Reply = { status: number; body: any };
export type Post = (path: string, body: unknown, expect?: number) => Promise<any>;

/** The field a 4xx names, wherever the error body puts it. */
export const errorField = (r: { body: any }): string | undefined => r.body?.error?.details?.field ?? r.body?.details?.field ?? r.body?.field;

/** Assert that a call was refused with this status, naming this field. */
export function refused(r: Reply, status: number, field: string): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(errorField(r), field, JSON.stringify(r.body));
}

export function fakeCloudApi(cloud: () => FakeCloud) {
  /** POST that must answer `expect` (201 by default); the body. */
  const post: Post = async (path, body, expect = 201) => {
    const r = await cloud().api.post(path, body);
    assert.equal(r.status, expect, `POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  /** An action on a resource, waited for. */
  const act = (collection: string, uuid: string, action: string, params: Record<string, unknown> = {}): Promise<Reply> =>
    cloud().api.post(`/v1/${collection}/${uuid}/actions?wait=true`, { [action]: params });
  /** The router spec the fake vrouter agent was last told to apply. */
  const lastRouterSpec = (): VPC.RouterSpecT => (cloud().vrouter.callsOf(VPC.RouterApply.name).at(-1) as { router: VPC.RouterSpecT }).router;
  return { post, act, field: errorField, refused, lastRouterSpec };
}

/** An L2 (VLAN on eth0) attached to the cluster, an L3 on it and one IP range. */
export async function vlanL3(post: Post, fc: FakeCloud, name: string, vlan: number, extra: Record<string, unknown>, cidr: string): Promise<string> {
  const l2 = await post('/v1/l2-networks', { name: `${name}-l2`, zoneUuid: fc.ids.zone, physicalInterface: 'eth0', vlan });
  await post(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: l2.uuid } }, 200);
  const n = await post('/v1/l3-networks', { name, l2NetworkUuid: l2.uuid, ...extra });
  await post('/v1/ip-ranges', { l3NetworkUuid: n.uuid, networkCidr: cidr });
  return n.uuid;
}

export interface VpcNetworks {
  prefix: string;
  /** The Public network. */
  pub: string;
  /** The VPC networks, in the order of their CIDRs. */
  vpc: string[];
}

/**
 * `<prefix>-public` (VLAN `vlan`) and one VPC network `<prefix>-vpc-a`, `-b`… per CIDR (VLANs
 * vlan+1, vlan+2…).
 */
export async function vpcNetworks(post: Post, fc: FakeCloud, prefix: string, vlan: number, publicCidr: string, vpcCidrs: string[]): Promise<VpcNetworks> {
  const pub = await vlanL3(post, fc, `${prefix}-public`, vlan, { category: 'Public' }, publicCidr);
  const vpc: string[] = [];
  for (const [i, cidr] of vpcCidrs.entries()) vpc.push(await vlanL3(post, fc, `${prefix}-vpc-${String.fromCharCode(97 + i)}`, vlan + 1 + i, { type: 'L3VpcNetwork' }, cidr));
  return { prefix, pub, vpc };
}

/** A virtual-router offering on the public network and a router `<prefix>-router` with the given VPC networks attached. */
export async function vpcRouter(post: Post, fc: FakeCloud, nets: VpcNetworks, attach: string[] = nets.vpc): Promise<{ uuid: string; vipUuid: string; publicIp: string }> {
  const off = await post('/v1/virtual-router-offerings', { name: `${nets.prefix}-vr`, zoneUuid: fc.ids.zone, publicNetworkUuid: nets.pub });
  const r = await post('/v1/vpc-routers', { name: `${nets.prefix}-router`, virtualRouterOfferingUuid: off.uuid });
  for (const n of attach) await post(`/v1/vpc-routers/${r.uuid}/actions?wait=true`, { attachL3Network: { l3NetworkUuid: n } }, 200);
  return { uuid: r.uuid, vipUuid: r.vipUuid, publicIp: r.publicIp };
}
