import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** The most requests in flight (or open connections) a description names one by one. */
const NAMED = 5;

/** A connection's last request and, once its response has closed, its status and when. */
interface LastRequest {
  readonly req: IncomingMessage;
  status?: number;
  closedAt?: number;
}

/** What a connection has done: for closing it when it is idle, and for naming it when it holds a close. */
interface ConnectionHistory {
  readonly since: number;
  requests: number;
  /** Responses of this connection not closed yet (more than one only with pipelining). */
  answering: number;
  /** socket.bytesRead when it opened or when its last response closed: more means a request has begun. */
  readMark: number;
  last?: LastRequest;
}

const tracked = new WeakMap<Server, ServerConnections>();

/**
 * A server's open connections and the requests it is answering on them. A closing server uses it to close
 * the connections that are truly idle (closeIdle), and a shutdown to say what holds its close (describe).
 */
export class ServerConnections {
  private readonly answering = new Map<ServerResponse, number>();
  private readonly connections = new Map<Socket, ConnectionHistory>();

  /** The tracker of `server`, created (and listening) on the first call: make that call before it listens. */
  static of(server: Server): ServerConnections {
    let connections = tracked.get(server);
    if (!connections) {
      connections = new ServerConnections(server);
      tracked.set(server, connections);
    }
    return connections;
  }

  private constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.connections.set(socket, { since: Date.now(), requests: 0, answering: 0, readMark: socket.bytesRead });
      socket.once('close', () => this.connections.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.answering.set(res, Date.now());
      const last: LastRequest = { req };
      // Held here: by the time the response closes, Node may have let go of req.socket (null).
      const socket = req.socket;
      const history = this.connections.get(socket);
      if (history) {
        history.requests++;
        history.answering++;
        history.last = last;
      }
      res.once('close', () => {
        this.answering.delete(res);
        last.status = res.statusCode;
        last.closedAt = Date.now();
        if (history) {
          history.answering--;
          history.readMark = socket.bytesRead;
        }
      });
    });
  }

  /** Requests in flight. */
  get size(): number {
    return this.answering.size;
  }

  /**
   * Closes every connection that is being answered nothing and has sent no byte of a next request: one just
   * opened that has not sent its first, or a kept-alive one between requests. Node's closeIdleConnections()
   * leaves the first kind open (it counts as waiting for its first request's headers), so a client that
   * opened a connection and had not used it yet held a closing server open until the headers timeout (60 s),
   * past SHUTDOWN_TIMEOUT_MS. A connection with a request begun, answered or not, is left to finish it.
   */
  closeIdle(): void {
    for (const [socket, history] of this.connections) {
      if (history.answering === 0 && socket.bytesRead === history.readMark) socket.destroy();
    }
  }

  /**
   * `2 request(s) in flight: GET /v2/a/blobs/sha256:… for 35.1 s (headers sent, … bytes written to the
   * connection, … waiting for the client to read), …`; with none, `no request in flight, 1 connection(s)
   * open: opened 40.2 s ago, 3 request(s), the last GET /v2/ (answered 200 38.0 s ago), 120 bytes read, 910
   * written`; or undefined when nothing is open.
   */
  describe(now = Date.now()): string | undefined {
    if (this.answering.size === 0) {
      if (this.connections.size === 0) return undefined;
      const named = [...this.connections].slice(0, NAMED).map(([socket, history]) => connectionState(socket, history, now));
      return `no request in flight, ${this.connections.size} connection(s) open: ${named.join('; ')}${andMore(this.connections.size, named.length)}`;
    }
    const oldest = [...this.answering].sort(([, a], [, b]) => a - b).slice(0, NAMED);
    const named = oldest.map(([res, since]) => `${requestLine(res.req)} for ${seconds(now - since)} s (${responseState(res)})`);
    return `${this.answering.size} request(s) in flight: ${named.join(', ')}${andMore(this.answering.size, named.length)}`;
  }
}

function andMore(all: number, named: number): string {
  return all > named ? `, and ${all - named} more` : '';
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/** Method and path, without the query (it may carry a credential). */
function requestLine(req: IncomingMessage | undefined): string {
  return `${req?.method ?? '?'} ${(req?.url ?? '?').split('?')[0]}`;
}

function responseState(res: ServerResponse): string {
  if (!res.headersSent) return 'no answer yet';
  const unsent = res.socket?.writableLength ?? 0;
  const sent = `headers sent, ${res.socket?.bytesWritten ?? 0} bytes written to the connection`;
  return unsent > 0 ? `${sent}, ${unsent} waiting for the client to read` : sent;
}

function connectionState(socket: Socket, history: ConnectionHistory, now: number): string {
  const { last } = history;
  const lastLine = !last
    ? 'no request yet'
    : `the last ${requestLine(last.req)} (${last.closedAt === undefined ? 'not answered' : `answered ${last.status} ${seconds(now - last.closedAt)} s ago`})`;
  return `opened ${seconds(now - history.since)} s ago, ${history.requests} request(s), ${lastLine}, ${socket.bytesRead} bytes read, ${socket.bytesWritten} written`;
}
