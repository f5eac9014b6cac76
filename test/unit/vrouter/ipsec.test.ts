// The VPC router's IPsec configuration (golden files: swanctl.conf, strongswan.conf), the
// validation of RouterSpec.ipsec, the SNAT exemption, and the parsing of swanctl's raw SA list
// and charon's log. Regenerate the golden files after an intended change:
//   UPDATE_GOLDEN=1 npx mocha test/unit/vrouter/ipsec.test.ts
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { golden as goldenFile } from '../../harness/assert.js';
import { TStackError } from '../../../shared/errors.js';
import { check } from '../../../shared/protocol/schema.js';
import type { RouterIpsecConnectionT } from '../../../shared/protocol/ipsec.js';
import { RouterSpec, type RouterSpecT } from '../../../shared/protocol/vpc.js';
import { connectionDigest, ipsecPaths, proposals, renderStrongswanConf, renderSwanctlConf } from '../../../vrouteragent/render/strongswan.js';
import { renderRouterNetfilter } from '../../../vrouteragent/render/router.js';
import { capIpsecLogs, CHARON_LOG_MAX_BYTES, lastErrors, logsToCap, parseRaw, validateIpsec } from '../../../vrouteragent/ipsec.js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { checkNoOverlap, cidrsOf, IPSEC_DEFAULTS } from '../../../controller/ipsec/model.js';

const GOLDEN = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');
const R = '7a1c2a9b-0d4e-4f00-8a00-00000000cafe';
const P = ipsecPaths(`/var/lib/tstack/vrouter/router/${R.replace(/-/g, '')}`);

const DEFAULTS: RouterIpsecConnectionT = {
  connectionUuid: '22222222-0000-4000-8000-000000000001',
  vip: '198.51.100.10',
  peerAddress: '203.0.113.7',
  localCidrs: ['10.1.0.0/24'],
  peerCidrs: ['10.9.0.0/24'],
  psk: 'a "quoted" key with \\ and } and newline\n',
  ikeVersion: 'ike',
  ikeAuthAlgorithm: 'sha1',
  ikeEncryptionAlgorithm: '3des',
  ikeDhGroup: 2,
  policyAuthAlgorithm: 'sha1',
  policyEncryptionAlgorithm: '3des',
  pfs: 'dh-group2',
};
const AES: RouterIpsecConnectionT = {
  ...DEFAULTS,
  connectionUuid: '22222222-0000-4000-8000-000000000002',
  vip: '198.51.100.30',
  peerAddress: '192.0.2.44',
  localCidrs: ['10.2.0.0/24', '10.1.0.0/24'],
  peerCidrs: ['172.16.8.0/22', '172.16.0.0/24'],
  psk: 'secret',
  ikeVersion: 'ikev2',
  ikeAuthAlgorithm: 'sha256',
  ikeEncryptionAlgorithm: 'aes-256',
  ikeDhGroup: 14,
  policyAuthAlgorithm: 'sha256',
  policyEncryptionAlgorithm: 'aes-128',
  pfs: 'none',
};

const SPEC: RouterSpecT = {
  routerUuid: R,
  public: { bridge: 'br-pub', ip: '198.51.100.10', prefix: 24, gateway: '198.51.100.1' },
  networks: [
    { l3NetworkUuid: '11111111-2222-4333-8444-555555555555', bridge: 'br-a', ip: '10.1.0.1', cidr: '10.1.0.0/24' },
    { l3NetworkUuid: '66666666-7777-4888-8999-aaaaaaaaaaaa', bridge: 'br-b', ip: '10.2.0.1', cidr: '10.2.0.0/24' },
  ],
  vips: ['198.51.100.30'],
  eips: [],
  portForwards: [],
  ipsec: [AES, DEFAULTS],
};

const field = (fn: () => void): string | undefined => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TStackError, String(e));
    return (e.details as { field?: string } | undefined)?.field;
  }
  return undefined;
};

describe('VPC router IPsec (strongSwan renderers, validation, status parsing)', () => {
  it('renders swanctl.conf (the manual\'s defaults and aes/sha256; key hex-encoded; stable order) and strongswan.conf (golden)', () => {
    const text = renderSwanctlConf(R, [AES, DEFAULTS]);
    goldenFile(GOLDEN, 'router-swanctl.conf', text);
    assert.equal(renderSwanctlConf(R, [DEFAULTS, AES]), text, 'input order does not matter');
    assert.ok(!text.includes('quoted'), 'the key never appears in clear text');
    assert.ok(text.includes(`secret = 0x${Buffer.from(DEFAULTS.psk).toString('hex')}`));
    goldenFile(GOLDEN, 'router-strongswan.conf', renderStrongswanConf(R, P, true));
    assert.match(renderStrongswanConf(R, P, false), /kernel-libipsec \{\n\s+load = no/, 'kernel ESP: no userspace data plane');
    assert.match(renderStrongswanConf(R, P, true), /socket = unix:\/\/charon\.vici\n/, 'the vici socket is named relative to the ipsec dir (no sockaddr_un length limit)');
  });

  it('maps the API algorithms to strongSwan proposals', () => {
    assert.deepEqual(proposals(DEFAULTS), { ike: '3des-sha1-modp1024', esp: '3des-sha1-modp1024' });
    assert.deepEqual(proposals(AES), { ike: 'aes256-sha256-modp2048', esp: 'aes128-sha256' });
    assert.deepEqual(proposals({ ...AES, ikeDhGroup: 19, pfs: 'dh-group5', policyAuthAlgorithm: 'sha512', policyEncryptionAlgorithm: 'aes-192' }), { ike: 'aes256-sha256-ecp256', esp: 'aes192-sha512-modp1536' });
  });

  it('a connection\'s digest changes with its selectors and its key, not with other connections', () => {
    const d = connectionDigest(DEFAULTS);
    assert.equal(connectionDigest({ ...DEFAULTS }), d);
    assert.notEqual(connectionDigest({ ...DEFAULTS, peerCidrs: ['10.9.0.0/24', '10.10.0.0/24'] }), d);
    assert.notEqual(connectionDigest({ ...DEFAULTS, psk: 'other' }), d);
  });

  it('the schema takes the spec; validation refuses a foreign VIP, the router\'s own peer, a duplicate pair and overlapping CIDRs, naming the field', () => {
    assert.deepEqual(check(RouterSpec, SPEC), []);
    validateIpsec(SPEC);
    const one = (c: Partial<RouterIpsecConnectionT>, extra: RouterIpsecConnectionT[] = []): RouterSpecT => ({ ...SPEC, ipsec: [{ ...DEFAULTS, ...c }, ...extra] });
    assert.equal(field(() => validateIpsec(one({ vip: '198.51.100.99' }))), 'router.ipsec.0.vip');
    assert.equal(field(() => validateIpsec(one({ peerAddress: '198.51.100.30' }))), 'router.ipsec.0.peerAddress');
    assert.equal(field(() => validateIpsec(one({}, [{ ...DEFAULTS, connectionUuid: AES.connectionUuid }]))), 'router.ipsec.1.peerAddress');
    assert.equal(field(() => validateIpsec(one({}, [{ ...DEFAULTS }]))), 'router.ipsec.1.connectionUuid');
    assert.equal(field(() => validateIpsec(one({ peerCidrs: ['192.168.0.0/16', '10.0.0.0/8'] }))), 'router.ipsec.0.peerCidrs.1');
    assert.equal(check(RouterSpec, one({ ikeEncryptionAlgorithm: 'des' as never }))[0]?.field, 'ipsec.0.ikeEncryptionAlgorithm');
    assert.equal(check(RouterSpec, one({ peerAddress: '300.1.1.1' }))[0]?.field, 'ipsec.0.peerAddress');
  });

  it('traffic between local and peer CIDRs is exempt from SNAT; kernel ESP also lets the decrypted traffic in', () => {
    const nf = renderRouterNetfilter(SPEC).text;
    const post = nf.split('\n').filter((l) => l.startsWith('-A POSTROUTING'));
    const exempt = post.filter((l) => l.endsWith('-j ACCEPT'));
    assert.deepEqual(exempt, [
      '-A POSTROUTING -s 10.1.0.0/24 -d 10.9.0.0/24 -j ACCEPT',
      '-A POSTROUTING -s 10.1.0.0/24 -d 172.16.0.0/24 -j ACCEPT',
      '-A POSTROUTING -s 10.1.0.0/24 -d 172.16.8.0/22 -j ACCEPT',
      '-A POSTROUTING -s 10.2.0.0/24 -d 172.16.0.0/24 -j ACCEPT',
      '-A POSTROUTING -s 10.2.0.0/24 -d 172.16.8.0/22 -j ACCEPT',
    ]);
    assert.ok(post.indexOf(exempt.at(-1)!) < post.findIndex((l) => l.includes('SNAT')), 'the exemptions come before every SNAT rule');
    assert.ok(!nf.includes('--pol ipsec'), 'kernel-libipsec: decrypted traffic arrives on ipsec0, nothing to open');
    const k = renderRouterNetfilter(SPEC, undefined, { kernelEsp: true }).text;
    assert.ok(k.includes('-A FORWARD -i pub0 -s 10.9.0.0/24 -d 10.1.0.0/24 -m policy --dir in --pol ipsec -j ACCEPT'));
    assert.ok(k.indexOf('--pol ipsec') < k.indexOf('-A FORWARD -i pub0 -j DROP'));
    assert.ok(!renderRouterNetfilter({ ...SPEC, ipsec: [] }).text.includes('-j ACCEPT\n-A POSTROUTING'), 'no connection, no exemption');
  });

  it('parses swanctl --list-sas --raw and charon\'s last error per connection', () => {
    const raw = [
      'list-sa event {c-22222222000040008000000000000001 {uniqueid=2 version=2 state=ESTABLISHED local-host=198.51.100.10 child-sas {c-22222222000040008000000000000001-1 {name=c-22222222000040008000000000000001 state=INSTALLED mode=TUNNEL local-ts=[10.1.0.0/24] remote-ts=[10.9.0.0/24 10.10.0.0/24]}}}}',
      'list-sa event {c-22222222000040008000000000000002 {uniqueid=3 version=2 state=CONNECTING child-sas {}}}',
      'list-sas reply {}',
    ].join('\n');
    const m = parseRaw(raw);
    assert.equal(m.length, 3);
    const sa = m[0]!['c-22222222000040008000000000000001'] as Record<string, any>;
    assert.equal(sa.state, 'ESTABLISHED');
    assert.deepEqual(sa['child-sas']['c-22222222000040008000000000000001-1']['remote-ts'], ['10.9.0.0/24', '10.10.0.0/24']);
    assert.equal((m[1]!['c-22222222000040008000000000000002'] as Record<string, any>).state, 'CONNECTING');
    const log = [
      '2026-12-05 10:49:02 10[IKE] <c-22222222000040008000000000000001|1> initiating IKE_SA c-22222222000040008000000000000001[1] to 203.0.113.7',
      '2026-12-05 10:49:02 12[IKE] <c-22222222000040008000000000000001|1> received NO_PROPOSAL_CHOSEN notify error',
      '2026-12-05 10:49:09 12[IKE] <c-22222222000040008000000000000002|4> giving up after 3 retransmits',
      '2026-12-05 10:49:10 12[IKE] <c-22222222000040008000000000000001|5> IKE_SA c-22222222000040008000000000000001[5] established between 198.51.100.10[198.51.100.10]...203.0.113.7[203.0.113.7]',
    ].join('\n');
    const e = lastErrors(log);
    assert.equal(e.get('c-22222222000040008000000000000001'), 'IKE: received NO_PROPOSAL_CHOSEN notify error');
    assert.equal(e.get('c-22222222000040008000000000000002'), 'IKE: giving up after 3 retransmits');
  });

  it('controller checks: CIDRs are networks, local and peer may not overlap (400 naming the changed side)', () => {
    assert.equal(IPSEC_DEFAULTS.ikeEncryptionAlgorithm, '3des');
    assert.equal(IPSEC_DEFAULTS.pfs, 'dh-group2');
    assert.equal(field(() => cidrsOf(['10.0.0.0/8', '10.1.2.3/24'], 'peerCidrs')), 'peerCidrs.1');
    checkNoOverlap(['10.1.0.0/24'], ['10.2.0.0/24', '10.1.1.0/24'], 'peerCidrs');
    assert.equal(field(() => checkNoOverlap(['10.1.0.0/24'], ['10.2.0.0/24', '10.0.0.0/8'], 'peerCidrs')), 'peerCidrs.1');
    assert.equal(field(() => checkNoOverlap(['10.1.0.0/24', '10.2.0.128/25'], ['10.2.0.0/24'], 'localCidrs')), 'localCidrs.1');
  });

  it('charon\'s log over its cap is moved to charon.log.1 (one old copy), its stderr file cut; under the cap nothing changes', async () => {
    assert.deepEqual(logsToCap({}, 10), { rotate: false, truncate: false }, 'no files yet');
    assert.deepEqual(logsToCap({ log: 10, out: 10 }, 10), { rotate: false, truncate: false }, 'at the cap');
    assert.deepEqual(logsToCap({ log: 11, out: 3 }, 10), { rotate: true, truncate: false });
    assert.deepEqual(logsToCap({ log: 3, out: 11 }, 10), { rotate: false, truncate: true });
    assert.ok(CHARON_LOG_MAX_BYTES >= 1024 * 1024 && CHARON_LOG_MAX_BYTES <= 64 * 1024 * 1024);
    const dir = mkdtempSync(join(tmpdir(), 'tstack-charonlog-'));
    try {
      const p = ipsecPaths(dir);
      mkdirSync(p.dir);
      const r = { spec: SPEC, namespace: 'tstack-none', dir };
      writeFileSync(p.log, 'a'.repeat(100));
      writeFileSync(`${p.log}.1`, 'older');
      writeFileSync(`${p.log}.out`, 'b'.repeat(20));
      assert.deepEqual(await capIpsecLogs(r, 50), { rotated: true, truncated: false });
      assert.equal(existsSync(p.log), false, 'charon (not running here) makes a fresh one');
      assert.equal(readFileSync(`${p.log}.1`, 'utf8'), 'a'.repeat(100), 'the full log is the one old copy');
      writeFileSync(p.log, 'c'.repeat(10));
      writeFileSync(`${p.log}.out`, 'b'.repeat(60));
      assert.deepEqual(await capIpsecLogs(r, 50), { rotated: false, truncated: true });
      assert.equal(statSync(`${p.log}.out`).size, 0);
      assert.equal(readFileSync(p.log, 'utf8'), 'c'.repeat(10));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
