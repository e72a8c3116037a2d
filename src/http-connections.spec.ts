import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { pipeline, Writable } from 'node:stream';
import { waitFor } from '../test/support/eventually.js';
import { ServerConnections } from './http-connections.js';

/** Waits (2 s at most) until the server's side has caught up with what a socket did. */
const until = (condition: () => boolean) => waitFor('the server to see it', condition, { timeoutMs: 2_000 });

describe('ServerConnections.describe (what holds a closing server)', () => {
  let server: Server;
  let inFlight: ServerConnections;
  const sockets: Socket[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url?.startsWith('/big')) {
        // 32 MiB to a client that reads nothing: the socket keeps what the kernel would not take
        res.writeHead(200, { 'content-length': String(32 * 1024 * 1024) });
        res.write(Buffer.alloc(32 * 1024 * 1024));
      }
      void released.then(() => res.end());
    });
    inFlight = ServerConnections.of(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    release();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A raw connection that sends one request and never reads the answer. */
  const request = (path: string) => {
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.pause();
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    sockets.push(socket);
  };

  it('says nothing when no request is in flight', () => {
    expect(inFlight.describe()).toBeUndefined();
  });

  it('names the oldest requests without their query, how long each has run and whether its client reads, then counts the rest', async () => {
    request('/big/blobs/sha256:abc?token=secret');
    await until(() => inFlight.size === 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (let i = 0; i < 5; i++) request(`/v2/held/${i}`);
    await until(() => inFlight.size === 6);
    const line = inFlight.describe(Date.now() + 2000)!;
    expect(line).toMatch(
      /^6 request\(s\) in flight: GET \/big\/blobs\/sha256:abc for 2\.\d s \(headers sent, \d+ bytes written to the connection, \d+ waiting for the client to read\), /,
    );
    expect(line).not.toContain('secret');
    expect(line).toMatch(/GET \/v2\/held\/\d for 2\.\d s \(no answer yet\), and 1 more$/);
    expect(line.match(/GET /g)).toHaveLength(5);
  });

  it('names what an open connection did last: its requests, the last one and its answer', async () => {
    for (const held of sockets.splice(0)) held.destroy();
    await until(() => inFlight.size === 0 && inFlight.describe() === undefined);
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    sockets.push(socket);
    socket.write('GET /small?token=secret HTTP/1.1\r\nHost: x\r\n\r\n');
    release();
    await until(() => inFlight.size === 0 && /answered 200/.test(inFlight.describe() ?? ''));
    const line = inFlight.describe(Date.now() + 3000)!;
    expect(line).toMatch(/^no request in flight, 1 connection\(s\) open: /);
    expect(line).toMatch(/opened 3\.\d s ago, 1 request\(s\), the last GET \/small \(answered 200 3\.\d s ago\), \d+ bytes read, \d+ written/);
    expect(line).not.toContain('secret');
  });

  it('with no request in flight, counts the connections still open; then nothing once they close', async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await until(() => inFlight.describe() === undefined);
    const idle = connect((server.address() as AddressInfo).port, '127.0.0.1');
    sockets.push(idle);
    await until(() => inFlight.describe()?.startsWith('no request in flight, 1 connection(s) open: ') === true);
    expect(inFlight.describe()).toMatch(
      /^no request in flight, 1 connection\(s\) open: opened \d+\.\d s ago, 0 request\(s\), no request yet, 0 bytes read, 0 written$/,
    );
    idle.destroy();
    await until(() => inFlight.describe() === undefined);
  });
});

describe('ServerConnections.closeIdle (a closing server lets go of connections it is not answering)', () => {
  let server: Server;
  let connections: ServerConnections;
  const answers: (() => void)[] = [];

  beforeEach(async () => {
    server = createServer((_req, res) => answers.push(() => res.end('done')));
    connections = ServerConnections.of(server);
    expect(ServerConnections.of(server)).toBe(connections);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  afterEach(async () => {
    for (const answer of answers.splice(0)) answer();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const open = async () => {
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    return { socket, closed, received: () => received };
  };
  const isClosed = (p: Promise<void>) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 200))]);

  it('closes a connection that has sent nothing yet (Node keeps it until its headers timeout), and lets the server close', async () => {
    const unused = await open();
    await until(() => connections.describe()?.includes('no request yet') === true);
    const closing = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    expect(await isClosed(unused.closed)).toBe(false); // what Node alone does
    connections.closeIdle();
    await unused.closed;
    await closing;
  });

  it('closes a kept-alive connection between requests, but not one that has begun its next request or is being answered', async () => {
    const between = await open();
    between.socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => answers.length === 1);
    answers.shift()!();
    await until(() => between.received().includes('done'));
    const begun = await open();
    begun.socket.write('GET /partial HTTP/1.1\r\nHo');
    const answering = await open();
    answering.socket.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => answers.length === 1);
    await until(() => begun.socket.bytesWritten > 0);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the partial request has arrived

    connections.closeIdle();
    await between.closed;
    expect(await isClosed(begun.closed)).toBe(false);
    expect(await isClosed(answering.closed)).toBe(false);

    // the begun request completes and is answered; once answered, its connection is idle again
    begun.socket.write('st: x\r\n\r\n');
    await until(() => answers.length === 2);
    for (const answer of answers.splice(0)) answer();
    await until(() => begun.received().includes('done') && answering.received().includes('done'));
    connections.closeIdle();
    await Promise.all([begun.closed, answering.closed]);
  });
});

describe('ServerConnections with a request body a failed pipeline destroyed', () => {
  it('counts the request answered and its connection idle, though Node has let go of req.socket', async () => {
    let socketAtClose: unknown = 'not closed';
    const server = createServer((req, res) => {
      res.once('close', () => (socketAtClose = req.socket));
      // An upload refused mid-body: stream.pipeline's cleanup sets req.socket to null before destroying req.
      const refuse = new Writable({ write: (_chunk, _encoding, callback) => callback(new Error('too large')) });
      pipeline(req, refuse, () => res.writeHead(413, { connection: 'close' }).end('too large'));
    });
    const connections = ServerConnections.of(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(1000)}`);
      await until(() => socketAtClose !== 'not closed');
      expect(socketAtClose).toBeNull(); // what this case is about
      await new Promise((resolve) => setImmediate(resolve)); // the tracker's own close listener has run
      expect(connections.size).toBe(0);
      socket.destroy();
      await until(() => connections.describe() === undefined);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
