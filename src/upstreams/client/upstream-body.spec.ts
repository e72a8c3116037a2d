import { arrayBuffer } from 'node:stream/consumers';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Agent } from 'undici';
import { requestUpstream, UpstreamBody, type UpstreamChunkSink } from './upstream-body.js';
import { classifyUpstreamError } from './upstream-error.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('UpstreamBody', () => {
  const servers: Server[] = [];
  const agent = new Agent({ keepAliveTimeout: 1000 });
  const payload = randomBytes(3 * 1024 * 1024 + 17);

  afterAll(async () => {
    await agent.close();
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  async function serve(handler: Handler): Promise<string> {
    const server = createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Sends `bytes` in 64 KiB pieces, each after the socket took the previous one. */
  const sendAll = (bytes: Buffer) => (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-length': String(bytes.length) });
    let offset = 0;
    const next = () => {
      while (offset < bytes.length) {
        const piece = bytes.subarray(offset, offset + 64 * 1024);
        offset += piece.length;
        if (!res.write(piece)) return void res.once('drain', next);
      }
      res.end();
    };
    next();
  };

  const get = (origin: string, signal?: AbortSignal) => requestUpstream(agent, { origin, path: '/blob', method: 'GET' }, signal);

  /** A sink that keeps every chunk; `delay` makes every batch of `every` chunks wait that long. */
  function collecting(options: { delay?: number; every?: number } = {}) {
    const chunks: Buffer[] = [];
    let waiting = 0;
    let overlapped = false;
    let ended = 0;
    const sink: UpstreamChunkSink = {
      write(chunk) {
        if (waiting > 0) overlapped = true;
        chunks.push(chunk);
        if (!options.delay || chunks.length % (options.every ?? 1) !== 0) return undefined;
        waiting++;
        return new Promise<void>((resolve) =>
          setTimeout(() => {
            waiting--;
            resolve();
          }, options.delay),
        );
      },
      async end() {
        ended++;
      },
    };
    return { sink, bytes: () => Buffer.concat(chunks), overlapped: () => overlapped, ended: () => ended };
  }

  it('reads as a Readable: the whole body, and an empty one for HEAD', async () => {
    const origin = await serve(sendAll(payload));
    const res = await get(origin);
    expect(res.statusCode).toBe(200);
    expect(Buffer.from(await arrayBuffer(res.body)).equals(payload)).toBe(true);
    const head = await requestUpstream(agent, { origin, path: '/blob', method: 'HEAD' }, undefined);
    expect((await arrayBuffer(head.body)).byteLength).toBe(0);
  });

  it('delivers every chunk to a sink in order, then ends it once', async () => {
    const origin = await serve(sendAll(payload));
    const res = await get(origin);
    const sink = collecting();
    await res.body.deliverTo(sink.sink);
    expect(sink.bytes().equals(payload)).toBe(true);
    expect(sink.ended()).toBe(1);
  });

  it('delivers what arrived before the sink first, also when the whole body is already in', async () => {
    const small = randomBytes(40 * 1024);
    for (const body of [payload, small]) {
      const origin = await serve(sendAll(body));
      const res = await get(origin);
      await new Promise((resolve) => setTimeout(resolve, 100)); // the body buffers up to its high-water mark meanwhile
      const sink = collecting();
      await res.body.deliverTo(sink.sink);
      expect(sink.bytes().equals(body)).toBe(true);
      expect(sink.ended()).toBe(1);
    }
  });

  it('waits for a write that asks to (the socket pauses): never two writes at once', async () => {
    const origin = await serve(sendAll(payload));
    const res = await get(origin);
    const sink = collecting({ delay: 5, every: 1 });
    await res.body.deliverTo(sink.sink);
    expect(sink.bytes().equals(payload)).toBe(true);
    expect(sink.overlapped()).toBe(false);
  });

  it("rejects with the sink's error and aborts the request", async () => {
    let closed!: () => void;
    const socketClosed = new Promise<void>((resolve) => (closed = resolve));
    const origin = await serve((req, res) => {
      res.socket?.once('close', closed);
      sendAll(payload)(req, res);
    });
    const res = await get(origin);
    const failing: UpstreamChunkSink = {
      write: () => Promise.reject(new Error('disk full')),
      end: async () => undefined,
    };
    await expect(res.body.deliverTo(failing)).rejects.toThrow('disk full');
    await socketClosed;
  });

  it('rejects with the transport error when the upstream hangs up mid-body, and never ends the sink', async () => {
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': String(payload.length) });
      res.write(payload.subarray(0, 256 * 1024), () => res.socket?.destroy());
    });
    const res = await get(origin);
    const sink = collecting();
    const err = await res.body.deliverTo(sink.sink).catch((e: unknown) => e);
    expect(classifyUpstreamError(err, 1).kind).toBe('unreachable');
    expect(sink.ended()).toBe(0);
  });

  it('refuses a second reader', async () => {
    const origin = await serve(sendAll(payload));
    const res = await get(origin);
    const first = res.body.deliverTo(collecting().sink);
    await expect(res.body.deliverTo(collecting().sink)).rejects.toThrow('already being read');
    await first;
  });

  it('dump() reads a small rest and cuts a large one off', async () => {
    const origin = await serve(sendAll(payload));
    await expect((await get(origin)).body.dump({ limit: 64 * 1024 })).resolves.toBeUndefined();
    const smallOrigin = await serve(sendAll(Buffer.from('{"errors":[]}')));
    const small = await get(smallOrigin);
    await small.body.dump();
    expect(small.body.readableEnded).toBe(true);
  });

  it('an abort after the answer started fails the body with the reason', async () => {
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': String(payload.length) });
      res.write(payload.subarray(0, 1024)); // and never the rest
    });
    const controller = new AbortController();
    const res = await get(origin, controller.signal);
    const reading = arrayBuffer(res.body).catch((e: unknown) => e);
    controller.abort(new Error('client went away'));
    expect(((await reading) as Error).message).toBe('client went away');
  });

  it('an empty body ends at once, for a sink too', async () => {
    expect((await arrayBuffer(UpstreamBody.empty())).byteLength).toBe(0);
    const sink = collecting();
    await UpstreamBody.empty().deliverTo(sink.sink);
    expect(sink.ended()).toBe(1);
    expect(sink.bytes().length).toBe(0);
  });
});
