// The console proxy's RFB handshakes against scripted peers: VNC authentication's DES response,
// the browser side offering only None, and refusals.
import assert from 'node:assert/strict';
import { ByteQueue, authenticateUpstream, greetDownstream, vncAuthResponse } from '../../../controller/console/rfb.js';
import { TOKEN_RE, vncPassword } from '../../../controller/console/tokens.js';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

describe('console: RFB handshakes', () => {
  it('computes the VNC authentication response (bit-reversed DES key)', () => {
    // reference: the classic vncpasswd key handling; "password" over a zero challenge
    const r = vncAuthResponse('password', Buffer.alloc(16));
    assert.equal(r.length, 16);
    assert.equal(r.subarray(0, 8).toString('hex'), r.subarray(8).toString('hex'), 'ECB: equal blocks encrypt equally');
    assert.notEqual(vncAuthResponse('passwore', Buffer.alloc(16)).toString('hex'), r.toString('hex'));
    // only the first 8 characters count (VNC's DES key)
    assert.equal(vncAuthResponse('password-longer', Buffer.alloc(16)).toString('hex'), r.toString('hex'));
    assert.equal(vncPassword('abcdefghijk'), 'abcdefgh');
    assert.equal(vncPassword(undefined), undefined);
  });

  it('authenticates upstream with VNC auth when a password is known', async () => {
    const q = new ByteQueue();
    const sent: Buffer[] = [];
    const challenge = Buffer.from('0123456789abcdef');
    q.push(Buffer.from('RFB 003.008\n'));
    q.push(Buffer.from([2, 1, 2]));
    q.push(challenge);
    q.push(u32(0));
    await authenticateUpstream(q, (b) => sent.push(b), 'secret12');
    assert.equal(sent[0]!.toString(), 'RFB 003.008\n');
    assert.deepEqual([...sent[1]!], [2]);
    assert.equal(sent[2]!.toString('hex'), vncAuthResponse('secret12', challenge).toString('hex'));
  });

  it('uses None when the server offers it and there is no password; refuses a failed auth', async () => {
    const q = new ByteQueue();
    const sent: Buffer[] = [];
    q.push(Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([1, 1]), u32(0)]));
    await authenticateUpstream(q, (b) => sent.push(b), undefined);
    assert.deepEqual([...sent[1]!], [1]);
    const q2 = new ByteQueue();
    const reason = Buffer.from('Authentication failed');
    q2.push(Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([1, 2]), Buffer.alloc(16), u32(1), u32(reason.length), reason]));
    await assert.rejects(authenticateUpstream(q2, () => undefined, 'wrongpw1'), /authentication failed: Authentication failed/);
    const q3 = new ByteQueue();
    q3.push(Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([1, 2])]));
    await assert.rejects(authenticateUpstream(q3, () => undefined, undefined), /no usable VNC security type.*no console password/);
    const q4 = new ByteQueue();
    q4.push(Buffer.from('HTTP/1.1 400'));
    await assert.rejects(authenticateUpstream(q4, () => undefined, undefined), /did not speak RFB/);
  });

  it('offers the browser only None and reports a closed peer', async () => {
    const q = new ByteQueue();
    const sent: Buffer[] = [];
    q.push(Buffer.from('RFB 003.008\n'));
    q.push(Buffer.from([1]));
    await greetDownstream(q, (b) => sent.push(b));
    assert.deepEqual(sent.map((b) => b.toString('hex')), [Buffer.from('RFB 003.008\n').toString('hex'), '0101', '00000000']);
    const q2 = new ByteQueue();
    const p = greetDownstream(q2, () => undefined);
    q2.push(Buffer.from('RFB 00'));
    q2.close(new Error('the browser went away'));
    await assert.rejects(p, /went away/);
  });

  it('accepts only well-formed tokens', () => {
    assert.ok(TOKEN_RE.test('A'.repeat(43)));
    assert.ok(!TOKEN_RE.test('../../etc/passwd'));
    assert.ok(!TOKEN_RE.test('A'.repeat(44)));
  });
});
