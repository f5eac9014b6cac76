// Shared fixtures of kvmagent's unit tests.
import type * as kvm from '../../../shared/protocol/kvm.js';

export const VM_UUID = '6f1c2b8e-2a44-4b7e-9c1d-0a1b2c3d4e5f';

export function minimalSpec(): kvm.VmSpecT {
  return {
    uuid: VM_UUID,
    name: 'web-1',
    cpuNum: 1,
    memorySize: 128 * 1024 * 1024,
    cpuMode: 'default',
    virtType: 'qemu',
    rootVolume: {
      uuid: '11111111-2222-4333-8444-555555555555',
      source: { type: 'file', path: '/var/lib/tstack/ps/root.qcow2', format: 'qcow2' },
      bus: 'virtio',
      cache: 'none',
      serial: 'root',
      deviceIndex: 0,
    },
    dataVolumes: [],
    cdroms: [],
    nics: [],
    bootOrder: ['hd'],
  };
}

