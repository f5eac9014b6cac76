// The listening socket the namespace helper hands over (listenInNamespace): the helper exits
// right after sending it, and the agent can see that exit before the message with the socket.
// The CI once saw "exited with 0" and then EADDRINUSE forever: the late socket was kept open in
// the agent. The wait now ends only at 'close', and a socket arriving after it ended is closed.
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { createServer, type Server, type AddressInfo } from 'node:net';
import { awaitHandle, type HandleChild } from '../../../vrouteragent/metadata/server.js';

class FakeChild extends EventEmitter {
  killed: string[] = [];
  kill(sig: NodeJS.Signals): boolean {
    this.killed.push(sig);
    return true;
  }
}

function listening(): Promise<Server> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}

/** Whether the port can be bound again (nothing holds it). */
function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

describe('vrouter: the namespace helper hands over its listening socket', () => {
  it("an 'exit' seen before the message does not end the wait: the socket is taken", async () => {
    const child = new FakeChild();
    const p = awaitHandle(child as unknown as HandleChild, 'x', 5_000, () => '');
    const srv = await listening();
    child.emit('exit', 0, null);
    child.emit('message', { listening: true }, srv);
    child.emit('close', 0);
    const got = await p;
    assert.equal(got, srv);
    assert.equal(got.listening, true);
    got.close();
  });

  it('a socket that arrives after the wait ended is closed, so the address is free for the next try', async () => {
    const child = new FakeChild();
    const p = awaitHandle(child as unknown as HandleChild, '169.254.169.254:80 in ns', 30, () => '');
    await assert.rejects(p, /binding 169\.254\.169\.254:80 in ns timed out/);
    assert.deepEqual(child.killed, ['SIGKILL']);
    const srv = await listening();
    const port = (srv.address() as AddressInfo).port;
    child.emit('message', { listening: true }, srv);
    await new Promise((r) => setImmediate(r));
    assert.equal(srv.listening, false);
    assert.equal(await free(port), true);
  });

  it("'close' without a socket is an error naming the helper's stderr; a helper error is the bind error", async () => {
    const a = new FakeChild();
    const pa = awaitHandle(a as unknown as HandleChild, 'h:80 in ns', 5_000, () => 'Cannot open network namespace\n');
    a.emit('close', 1);
    await assert.rejects(pa, /listener helper for h:80 in ns exited with 1 and sent no socket: Cannot open network namespace$/);
    const b = new FakeChild();
    const pb = awaitHandle(b as unknown as HandleChild, 'h:80 in ns', 5_000, () => '');
    b.emit('message', { error: 'listen EADDRINUSE: address already in use' });
    await assert.rejects(pb, /cannot listen on h:80 in ns: listen EADDRINUSE/);
  });
});
