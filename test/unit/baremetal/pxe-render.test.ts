// PXE server renderers (golden files): dnsmasq with DHCP range, TFTP for non-iPXE firmware, the
// HTTP boot script for iPXE and router advertisements; per-machine iPXE scripts (inspect,
// deploy, local = exit to the disk); the spec checks that refuse a bad range with the field.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { golden as goldenFile } from '../../harness/assert.js';
import { checkPxeSpec, pxePaths, renderBootstrapIpxe, renderMachineIpxe, renderPxeDnsmasqConf } from '../../../vrouteragent/render/pxe.js';
import type { PxeServerSpecT } from '../../../shared/protocol/baremetal.js';

const GOLDEN = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');
const golden = (name: string, actual: string): void => goldenFile(GOLDEN, name, actual);

const SPEC: PxeServerSpecT = {
  pxeServerUuid: '5a1e0000-0000-4000-8000-000000000021',
  bridge: 'br-prov',
  serverIp: '10.88.0.1',
  dhcpRangeBegin: '10.88.0.100',
  dhcpRangeEnd: '10.88.0.150',
  dhcpRangeNetmask: '255.255.255.0',
  httpPort: 8090,
  running: true,
  machines: [
    { mac: '52:54:00:aa:00:01', boot: 'inspect', token: 'tok-inspect-0123456789' },
    { mac: '52:54:00:aa:00:02', boot: 'deploy', token: 'tok-deploy-01234567890' },
    { mac: '52:54:00:aa:00:03', boot: 'local' },
  ],
};

const bad = (over: Partial<PxeServerSpecT>, field: string): void => {
  assert.throws(() => checkPxeSpec({ ...SPEC, ...over }), (e: any) => e.code === 'INVALID_ARGUMENT' && e.details?.field === `server.${field}`, `${JSON.stringify(over)} → ${field}`);
};

describe('unit: PXE server renderers', () => {
  it('dnsmasq.conf', () => {
    golden('pxe-dnsmasq.conf', renderPxeDnsmasqConf(SPEC, 'pxe0', pxePaths('/var/lib/tstack/baremetal/pxe/x')));
  });

  it('iPXE scripts: bootstrap by MAC, inspect, deploy, local and unknown machines exit', () => {
    golden('pxe-boot.ipxe', renderBootstrapIpxe(SPEC));
    golden('pxe-inspect.ipxe', renderMachineIpxe(SPEC, '52:54:00:AA:00:01').script);
    assert.equal(renderMachineIpxe(SPEC, '52:54:00:aa:00:02').boot, 'deploy');
    assert.match(renderMachineIpxe(SPEC, '52:54:00:aa:00:02').script, /initrd http:\/\/10\.88\.0\.1:8090\/images\/deploy\.img/);
    for (const mac of ['52:54:00:aa:00:03', '52:54:00:aa:00:99']) {
      const r = renderMachineIpxe(SPEC, mac);
      assert.equal(r.boot, 'local');
      assert.match(r.script, /\nexit\n$/);
    }
  });

  it('spec checks name the field', () => {
    checkPxeSpec(SPEC);
    bad({ dhcpRangeNetmask: '255.0.255.0' }, 'dhcpRangeNetmask');
    bad({ dhcpRangeBegin: '10.89.0.100' }, 'dhcpRangeBegin');
    bad({ dhcpRangeEnd: '10.88.0.10' }, 'dhcpRangeEnd');
    bad({ serverIp: '10.88.0.120' }, 'serverIp');
    bad({ serverIp: '10.88.0.255' }, 'serverIp');
    bad({ machines: [SPEC.machines[0]!, { ...SPEC.machines[0]!, token: 'another-token-0123456' }] }, 'machines.1.mac');
    bad({ machines: [{ mac: '52:54:00:aa:00:09', boot: 'inspect' }] }, 'machines.0.token');
  });
});
