// The VPC router's haproxy configuration (golden file) and the parsing of haproxy's stats output.
// Regenerate the golden file after an intended change:
//   UPDATE_GOLDEN=1 npx mocha test/unit/vrouter/lb.test.ts
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { golden as goldenFile } from '../../harness/assert.js';
import type { RouterLbListenerT } from '../../../shared/protocol/lb.js';
import { haproxyPaths, renderHaproxyConfig } from '../../../vrouteragent/render/haproxy.js';
import { parseStat } from '../../../vrouteragent/lb.js';

const GOLDEN = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');
const R = '7a1c2a9b-0d4e-4f00-8a00-00000000cafe';
const P = haproxyPaths(`/var/lib/tstack/vrouter/router/${R.replace(/-/g, '')}`);

const base: RouterLbListenerT = {
  listenerUuid: '11111111-0000-4000-8000-000000000001',
  vip: '198.51.100.30',
  protocol: 'tcp',
  port: 80,
  instancePort: 8080,
  algorithm: 'roundrobin',
  idleTimeoutSec: 60,
  healthyThreshold: 2,
  unhealthyThreshold: 2,
  healthCheckIntervalSec: 5,
  healthCheckTimeoutSec: 2,
  healthCheckTarget: 'tcp:default',
  maxConnection: 5000,
  backends: [
    { vmNicUuid: 'aaaaaaaa-0000-4000-8000-000000000012', ip: '10.1.0.12' },
    { vmNicUuid: 'aaaaaaaa-0000-4000-8000-000000000005', ip: '10.1.0.5' },
  ],
};

describe('VPC router load balancer (haproxy renderer)', () => {
  it('renders tcp, https (TLS terminated, HTTP check) and leaves udp out; stable order (golden)', () => {
    const https: RouterLbListenerT = {
      ...base,
      listenerUuid: '11111111-0000-4000-8000-000000000002',
      vip: '198.51.100.10',
      protocol: 'https',
      port: 443,
      algorithm: 'leastconn',
      idleTimeoutSec: 300,
      healthCheckTarget: 'http:/healthz?full=1',
      maxConnection: 100,
      certificate: { certificateUuid: 'cccccccc-0000-4000-8000-000000000001', pem: 'x' },
    };
    const udp: RouterLbListenerT = { ...base, listenerUuid: '11111111-0000-4000-8000-000000000003', protocol: 'udp', port: 53 };
    const text = renderHaproxyConfig(R, [base, udp, https], P)!;
    goldenFile(GOLDEN, 'router-haproxy.cfg', text);
    assert.equal(renderHaproxyConfig(R, [https, base, udp], P), text, 'input order does not matter');
    assert.ok(P.sock.length < 108, 'the stats socket path fits a sockaddr_un');
  });

  it('nothing for haproxy (no listener, or only udp) renders nothing', () => {
    assert.equal(renderHaproxyConfig(R, [], P), undefined);
    assert.equal(renderHaproxyConfig(R, [{ ...base, protocol: 'udp' }], P), undefined);
  });

  it('parses `show stat` CSV by its header', () => {
    const csv = '# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,check_status\nb-1,n-a,0,0,1,2,,7,UP,L4OK\nb-1,n-b,0,0,0,0,,3,DOWN,L4CON\n\n';
    const rows = parseStat(csv);
    assert.equal(rows.length, 2);
    assert.equal(rows[1]!.status, 'DOWN');
    assert.equal(rows[1]!.check_status, 'L4CON');
    assert.equal(rows[0]!.stot, '7');
    assert.deepEqual(parseStat('garbage'), []);
  });
});
