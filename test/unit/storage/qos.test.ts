// QoS mapping: API names → kvmagent spec, and what an instance offering gives a VM.
import assert from 'node:assert/strict';
import { diskQosSpec, nicQosSpec, qosOfOffering } from '../../../controller/storage/qos.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';

const storeOf = (rs: Resource[]): InventoryStore => ({ get: async (u: string) => rs.find((r) => r.uuid === u) }) as unknown as InventoryStore;
const res = (uuid: string, f: Record<string, unknown>): Resource => ({ uuid, kind: 'x', name: uuid, createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], ...f });

describe('storage: QoS', () => {
  it('maps API fields to the kvmagent spec; nothing set → undefined', () => {
    assert.deepEqual(diskQosSpec({ totalBandwidth: 2048, totalIops: 10 }), { totalBytesSec: 2048, totalIopsSec: 10 });
    assert.deepEqual(diskQosSpec({ readBandwidth: 1, writeBandwidth: 2 }), { readBytesSec: 1, writeBytesSec: 2 });
    assert.equal(diskQosSpec({}), undefined);
    assert.equal(diskQosSpec(undefined), undefined);
    assert.deepEqual(nicQosSpec({ inboundBandwidth: 4096 }), { inboundBytesSec: 4096 });
    assert.equal(nicQosSpec({}), undefined);
  });

  it('an instance offering gives the root volume and the NICs their limits', async () => {
    const off = res('o', { volumeTotalBandwidth: 1 << 20, networkInboundBandwidth: 2048, networkOutboundBandwidth: 4096 });
    assert.deepEqual(await qosOfOffering(storeOf([off]), res('vm', { instanceOfferingUuid: 'o' })), { root: { totalBandwidth: 1 << 20 }, nic: { inboundBandwidth: 2048, outboundBandwidth: 4096 } });
    assert.deepEqual(await qosOfOffering(storeOf([res('o', {})]), res('vm', { instanceOfferingUuid: 'o' })), {});
    assert.deepEqual(await qosOfOffering(storeOf([]), res('vm', {})), {});
  });

  it('takes the offering record the caller read when it is the VM\'s, else reads it', async () => {
    const read = res('o', { networkInboundBandwidth: 2048 });
    const other = res('p', { networkInboundBandwidth: 8192 });
    assert.deepEqual(await qosOfOffering(storeOf([]), res('vm', { instanceOfferingUuid: 'o' }), read), { nic: { inboundBandwidth: 2048 } });
    assert.deepEqual(await qosOfOffering(storeOf([read]), res('vm', { instanceOfferingUuid: 'o' }), other), { nic: { inboundBandwidth: 2048 } });
  });
});
