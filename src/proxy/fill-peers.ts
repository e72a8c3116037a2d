import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { networkInterfaces } from 'node:os';
import type { AddressInfo } from 'node:net';
import { Inject, Injectable, OnApplicationShutdown, Optional } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { Agent, request, type Dispatcher } from 'undici';
import { appConfig, upstreamConfig, type AppConfig, type UpstreamConfig } from '../config/config.js';
import type { FillHolder } from './fill-lock.js';

/** The internal route a fill's holder serves its growing object on, to the other replicas. */
export const FILL_ROUTE_PREFIX = '/-/internal/fills/';

/** How the holder's fill route answers when its fill did not start: the follower acts on it. */
export const FILL_OUTCOME_HEADER = 'x-cvr-fill-outcome';
export type PeerFillOutcome = 'not-here' | 'failed' | 'uncacheable' | 'gone';

/** A connection to a peer that does not come within this is a dead peer. */
const PEER_CONNECT_TIMEOUT_MS = 2_000;
/** Errors that mean nobody is there any more (connection refused, reset before an answer, no route, connect timeout). */
const DEAD_PEER_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

export type PeerFillAnswer =
  | { kind: 'streaming'; size: number; body: Dispatcher.ResponseData['body'] }
  | { kind: PeerFillOutcome }
  /** Nobody answers at the holder's address (the replica died): its lease may be taken over. */
  | { kind: 'unreachable'; error: Error }
  /** The holder did not answer in time: it lives, but cannot be followed now. */
  | { kind: 'stalled'; error: Error };

/**
 * The replicas' side of cross-replica fills: the URL this process announces in its fill leases, and the
 * client that follows another replica's fill. The holder's answer carries no credential of the client:
 * the lease token in the URL is the only authorisation, and only processes that read Redis know it.
 */
@Injectable()
export class FillPeers implements OnApplicationShutdown {
  private readonly agent: Agent;
  /** An HTTP worker's own listener (listenForPeers). */
  private peerServer?: Server;

  constructor(
    @Inject(appConfig.KEY) private readonly app: AppConfig,
    @Inject(upstreamConfig.KEY) upstream: UpstreamConfig,
    @Optional() private readonly http?: HttpAdapterHost,
  ) {
    this.agent = new Agent({
      connectTimeout: PEER_CONNECT_TIMEOUT_MS,
      // The holder answers once its upstream did, and streams at the upstream's pace.
      headersTimeout: upstream.headersTimeoutMs + upstream.connectTimeoutMs,
      bodyTimeout: upstream.bodyTimeoutMs,
    });
  }

  /**
   * Where the other replicas reach this process: PEER_URL, else the address it listens on (the first
   * non-internal IPv4 address when it listens on every interface). Undefined without an HTTP listener.
   */
  selfUrl(): string | undefined {
    // No listener (the worker): nobody can follow this process's fills, whatever PEER_URL says.
    const server: Pick<Server, 'address'> | undefined = this.peerServer ?? (this.http?.httpAdapter?.getHttpServer?.() as Server | undefined);
    const address = server?.address?.() as AddressInfo | string | null | undefined;
    if (!address || typeof address === 'string') return undefined;
    if (this.app.peerUrl) {
      const peer = new URL(this.app.peerUrl);
      // An HTTP worker: PEER_URL names the host, the worker's own listener the port.
      if (this.peerServer) peer.port = String(address.port);
      return peer.origin;
    }
    const host = isWildcard(address.address) ? (externalAddress() ?? '127.0.0.1') : address.address;
    return new URL(`http://${host.includes(':') ? `[${host}]` : host}:${address.port}`).origin;
  }

  /**
   * For an HTTP worker (HTTP_WORKERS > 1): the port the workers share reaches any of them, so a fill's
   * holder announces a listener of its own, on `host` and a port of the system's choosing, that serves
   * the same application (the fill route among it).
   */
  async listenForPeers(host: string): Promise<void> {
    const fastify = this.http?.httpAdapter?.getInstance?.<{ routing: (req: IncomingMessage, res: ServerResponse) => void }>();
    if (!fastify) throw new Error('no HTTP application to serve the fill route');
    const server = createServer((req, res) => fastify.routing(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // exclusive: a port of this worker's own, not one shared through the cluster primary.
      server.listen({ host, port: 0, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.peerServer = server;
  }

  /** Follows `holder`'s fill of `digest` from its first byte. */
  async follow(holder: FillHolder & { peerUrl: string }, digest: string): Promise<PeerFillAnswer> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${holder.peerUrl}${FILL_ROUTE_PREFIX}${encodeURIComponent(holder.token)}`, { dispatcher: this.agent });
    } catch (err) {
      // Only a holder nobody answers for is dead; a slow one (its upstream is slow) is alive.
      return DEAD_PEER_ERRORS.has((err as { code?: string }).code ?? '')
        ? { kind: 'unreachable', error: err as Error }
        : { kind: 'stalled', error: err as Error };
    }
    res.body.on('error', () => undefined); // the caller's stream handlers take over; never unhandled
    const size = Number(res.headers['content-length']);
    if (res.statusCode === 200 && Number.isSafeInteger(size) && res.headers['docker-content-digest'] === digest) {
      return { kind: 'streaming', size, body: res.body };
    }
    res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    const outcome = res.headers[FILL_OUTCOME_HEADER];
    return { kind: isOutcome(outcome) ? outcome : 'gone' };
  }

  /** After the HTTP listener closed: no follow starts after this. */
  async onApplicationShutdown(): Promise<void> {
    const server = this.peerServer;
    if (server) {
      // Followers still streaming a fill of this worker finish (the fills drained before this).
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
    }
    await this.agent.close();
  }
}

function isOutcome(value: unknown): value is PeerFillOutcome {
  return value === 'not-here' || value === 'failed' || value === 'uncacheable' || value === 'gone';
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || address === '::0';
}

function externalAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}
