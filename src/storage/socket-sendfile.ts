import { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { ServerResponse, type IncomingMessage } from 'node:http';
import { getSystemErrorName } from 'node:util';
import type { Writable } from 'node:stream';
import type { SendfileMode } from '../config/environment.js';
import { nativeAddon } from './native-addon.js';

export type { SendfileMode };

/** sendfile(2) from a file to a socket: cached pages from the event loop, the rest from libuv's thread pool (native/sendfile/sendfile.c). */
const addon = nativeAddon;

/** Whether this build can send files with sendfile (the native addon was built by `npm install`). */
export const SENDFILE_AVAILABLE = addon !== undefined;

const EMPTY = Buffer.alloc(0);

/**
 * Transfers started and bytes sent with sendfile by this process (for tests and diagnostics); `pooledBytes`
 * of them were sent from the thread pool because they were not in the page cache (the event loop sent the rest).
 */
export const sendfileStats = { transfers: 0, bytes: 0, pooledBytes: 0, copiedTransfers: 0 };

/**
 * Whether a transfer in `mode` to a client at `remoteAddress` copies rather than sendfiles. On loopback the
 * client is on this host and copies every byte out of the socket itself: sendfile hands the socket
 * page-cache pages the client then copies from memory, where a copy by the sender leaves them in the CPU
 * caches the client reads them from. Measured with real clients on loopback (200 MiB warm pulls, skopeo):
 * on an Intel host nginx with sendfile 1.05-1.08 x a direct pull, nginx copying 256 KiB buffers 0.95-1.00 x;
 * the app 1.05-1.07 with sendfile, 0.98-0.99 copying. On an AMD EPYC host the app 0.977 x copying, 1.007 with
 * sendfile, and a curl GET loop 2.1-2.9 GB/s copying, 2.0-2.5 with sendfile (the addon's copy_call says why
 * through a buffer). The cost: CPU sendfile does not spend. A remote client's NIC takes the pages as they
 * are: no copy at all.
 */
export function loopbackCopies(mode: SendfileMode, remoteAddress: string | undefined): boolean {
  return mode === 'auto' && isLoopback(remoteAddress);
}

/**
 * The plain TCP socket under `out` when a body may be sent to it with sendfile: `out` is an HTTP/1 response
 * with a body, and its connection is neither TLS nor anything without a descriptor. A keep-alive response
 * that waits for the previous one on its connection to finish (its client already has every byte of it)
 * gets the socket once that one finishes. Undefined otherwise: the caller writes the bytes itself.
 */
export async function sendfileSocket(out: Writable, mode: SendfileMode): Promise<Socket | undefined> {
  if (!addon || mode === 'off' || !(out instanceof ServerResponse)) return undefined;
  // Node drops the body of these itself; sendfile would put it on the wire.
  if ((out.req as IncomingMessage | undefined)?.method === 'HEAD' || out.statusCode === 204 || out.statusCode === 304) return undefined;
  if (!out.socket && !out.writableEnded && !out.destroyed) {
    await new Promise<void>((resolve) => {
      const done = () => {
        out.off('socket', done);
        out.off('close', done);
        resolve();
      };
      out.once('socket', done);
      out.once('close', done);
    });
    // The previous response's buffered output is written right after 'socket': let it go first.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const socket = out.socket;
  if (!(socket instanceof Socket) || socket instanceof TLSSocket || socket.destroyed || !socket.writable) return undefined;
  return descriptorOf(socket) === undefined ? undefined : socket;
}

function descriptorOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Sends the response's headers, then bytes [offset, offset + length) of the open file `fd` with sendfile,
 * straight from the page cache to the socket (or, to a loopback client in `auto` mode, copied by the addon). Resolves once every byte is in the socket; rejects if the
 * client goes away (the transfer stops at once) or a call fails. The file must stay open until it settles.
 * The response is not ended: the caller ends it.
 */
export async function sendFileToResponse(out: ServerResponse, socket: Socket, fd: number, offset: number, length: number, mode: SendfileMode): Promise<void> {
  if (!addon) throw new Error('sendfile is not available in this build');
  // `headersSent` is already true after writeHead, before a byte is written: flush in any case (a no-op
  // once sent). What Node holds for this socket goes first: its writes complete in order.
  out.flushHeaders();
  await new Promise<void>((resolve, reject) => socket.write(EMPTY, (err) => (err ? reject(err) : resolve())));
  const socketFd = descriptorOf(socket);
  if (socket.destroyed || socketFd === undefined) throw new Error('the client closed the connection');
  if (length === 0) return;
  await new Promise<void>((resolve, reject) => {
    const onClose = () => addon.cancel(transfer);
    sendfileStats.transfers += 1;
    const copy = loopbackCopies(mode, socket.remoteAddress);
    if (copy) sendfileStats.copiedTransfers += 1;
    const transfer = addon.sendFile(
      socketFd,
      fd,
      offset,
      length,
      (errno, sent, pooled) => {
        socket.off('close', onClose);
        sendfileStats.bytes += sent;
        sendfileStats.pooledBytes += pooled;
        if (errno === 0) return resolve();
        const name = getSystemErrorName(-errno);
        reject(Object.assign(new Error(`sendfile failed after ${sent} of ${length} bytes: ${name}`), { code: name, errno: -errno }));
      },
      copy,
    );
    socket.once('close', onClose);
  });
}

/** Whether `address` (a socket's remote address) is this host's loopback: 127.0.0.0/8 or ::1, IPv4-mapped too. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}
