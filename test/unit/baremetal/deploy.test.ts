// Provisioning's pure parts: the deploy ramdisk's instructions (every value checked, files
// required for a deploy), the static address allocation outside the PXE DHCP range, host names
// from instance names, the root password's vendor-data, and the deploy-related schemas.
import assert from 'node:assert/strict';
import { renderDeployInstructions, renderMachineIpxe } from '../../../vrouteragent/render/pxe.js';
import { passwordVendorData } from '../../../vrouteragent/baremetal/deploy.js';
import { allocateAddress, hostnameOf } from '../../../controller/baremetal/instances.js';
import { baremetal as BM } from '../../../shared/protocol/index.js';
import { validate } from '../../../shared/protocol/schema.js';

const spec: BM.PxeServerSpecT = { pxeServerUuid: '0b4c7c56-1d7e-4c1e-9a55-0d3f1f2f0a01', bridge: 'br0', serverIp: '10.88.0.1', dhcpRangeBegin: '10.88.0.100', dhcpRangeEnd: '10.88.0.150', dhcpRangeNetmask: '255.255.255.0', httpPort: 80, running: true, machines: [] };
const TOKEN = 'tok_0123456789abcdefXYZ';
const INST = '3f0e4c2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
const IMG = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d';
const deployM = { mac: '52:54:00:21:00:01', boot: 'deploy' as const, token: TOKEN, deploy: { action: 'deploy' as const, instanceUuid: INST, imageUuid: IMG } };
const files = { image: { sizeBytes: 17_825_792, sha256: 'a'.repeat(64) }, configDrive: { sizeBytes: 374_784, sha256: 'b'.repeat(64) } };

describe('bare metal: deploy instructions and provisioning helpers', () => {
  it('a deploy machine boots the deploy ramdisk with its token; its instructions name the image and config drive with their checksums', () => {
    const s = { ...spec, machines: [deployM] };
    const r = renderMachineIpxe(s, deployM.mac);
    assert.equal(r.boot, 'deploy');
    assert.match(r.script, /initrd=deploy\.img .*tstack\.mode=deploy tstack\.callback=http:\/\/10\.88\.0\.1:80\/callback\/tok_0123456789abcdefXYZ/);
    assert.equal(
      renderDeployInstructions(s, deployM, files),
      [
        'ACTION=deploy',
        `INSTANCE=${INST}`,
        `IMAGE_URL=http://10.88.0.1:80/deploy/${TOKEN}/image`,
        'IMAGE_SIZE=17825792',
        `IMAGE_SHA256=${'a'.repeat(64)}`,
        `CONFIGDRIVE_URL=http://10.88.0.1:80/deploy/${TOKEN}/configdrive`,
        'CONFIGDRIVE_SIZE=374784',
        `CONFIGDRIVE_SHA256=${'b'.repeat(64)}`,
        '',
      ].join('\n'),
    );
  });

  it('a deploy whose files were not prepared is refused (CONFLICT); a wipe needs none', () => {
    assert.throws(() => renderDeployInstructions(spec, deployM, { image: files.image }), (e: any) => e.code === 'CONFLICT' && /not prepared/.test(e.message));
    const wipe = { ...deployM, deploy: { action: 'wipe' as const, instanceUuid: INST, rootDevice: 'sda' } };
    assert.equal(renderDeployInstructions(spec, wipe, {}), `ACTION=wipe\nINSTANCE=${INST}\nROOT_DEVICE=sda\n`);
  });

  it('spec schema: a rootDevice or a token with shell characters never reaches the ramdisk', () => {
    const bad = (m: unknown) => assert.throws(() => validate(BM.PxeServerSpec, { ...spec, machines: [m] }, 'spec'), /machines/);
    bad({ ...deployM, deploy: { ...deployM.deploy, rootDevice: 'vda;reboot' } });
    bad({ ...deployM, token: 'tok$(reboot)0123456789' });
    bad({ ...deployM, deploy: { ...deployM.deploy, action: 'format' } });
    validate(BM.PxeServerSpec, { ...spec, machines: [deployM] }, 'spec');
  });

  it('deploy reports: ok, or the failed step with a message', () => {
    validate(BM.DeployReport, { ok: false, step: 'checksum', message: 'checksum mismatch', disk: 'vda', seconds: 12 }, 'r');
    assert.throws(() => validate(BM.DeployReport, { ok: false, step: 'Check Sum!' }, 'r'));
    assert.throws(() => validate(BM.DeployReport, { ok: true, extra: 1 }, 'r'));
  });

  it('static addresses: the lowest free one outside the DHCP range and the server; none left → CONFLICT', () => {
    const srv = { dhcpInterfaceAddress: '10.88.0.1', dhcpRangeBegin: '10.88.0.2', dhcpRangeEnd: '10.88.0.250', dhcpRangeNetmask: '255.255.255.0' };
    assert.equal(allocateAddress(srv, new Set()), '10.88.0.251');
    assert.equal(allocateAddress(srv, new Set(['10.88.0.251', '10.88.0.252'])), '10.88.0.253');
    assert.throws(() => allocateAddress(srv, new Set(['10.88.0.251', '10.88.0.252', '10.88.0.253', '10.88.0.254'])), (e: any) => e.code === 'CONFLICT');
    assert.equal(allocateAddress({ ...srv, dhcpRangeBegin: '10.88.0.100', dhcpRangeEnd: '10.88.0.150' }, new Set(['10.88.0.2'])), '10.88.0.3');
  });

  it('host names from instance names; the password vendor-data holds the hash only', () => {
    assert.equal(hostnameOf('BM One', 'abcdef01-x'), 'bm-one');
    assert.equal(hostnameOf('--Web_01..prod--', 'abcdef01-x'), 'web-01-prod');
    assert.equal(hostnameOf('日本', 'abcdef01-x'), 'bm-abcdef01');
    assert.equal(hostnameOf('x'.repeat(80), 'u').length, 63);
    assert.equal(passwordVendorData('$6$salt$hash'), '#cloud-config\nchpasswd:\n  list: |\n    root:$6$salt$hash\n  expire: false\n');
  });
});
