/*
 * sendfile(2) from a stored object to a client's TCP socket, for the app's warm blob GETs: the kernel
 * sends page-cache pages itself, instead of the process reading each byte into a buffer and writing it
 * back out (two copies and a JavaScript turn per MiB). Node has no sendfile for sockets; this is the
 * whole of it.
 *
 *   const transfer = sendFile(socketFd, fileFd, offset, length, (errno, sent, pooled) => { ... }, copy);
 *   cancel(transfer);  // the socket is going away: stop, and shut the connection down
 *
 * With `copy` true, each call reads 1 MiB into a buffer and writes them instead of a sendfile (a client on
 * this host: see copy_call); everything else is the same.
 *
 * The calls use a duplicate of the socket's descriptor, which Node set non-blocking: a full socket makes
 * sendfile return EAGAIN, and the transfer waits for it on the event loop (uv_poll on the duplicate, so
 * Node's own watcher of the socket is untouched). A part of the file that is in the page cache is sent by
 * the event loop itself, as nginx does: sendfile then only hands cached pages to the socket and returns.
 * A part that is not cached is sent from libuv's thread pool, where reading it from disk blocks nobody
 * (cached() below decides, before each call). A pool thread waits up to a millisecond for the socket to
 * take more (a local client always does); after one such wait times out, the transfer waits on the event
 * loop instead, so a slow client never holds a pool thread. The socket is corked while the transfer runs
 * (cork() below). The callback runs once, on the event loop, after the duplicate is closed: errno 0 when
 * every byte was sent, the bytes sent, and how many of them the thread pool sent.
 */
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <uv.h>

/* One sendfile call sends at most this much, so a cancel is seen between calls of a huge transfer. */
#define MAX_CALL (16 * 1024 * 1024)
/* How long a pool thread waits for a full socket to take more, before handing the wait to the loop. */
#define POOL_WAIT_MS 1
/* A copying transfer (see copy_call) reads and writes this much at a time. */
#define COPY_CHUNK (1024 * 1024)

typedef struct {
  napi_env env;
  napi_ref callback;
  napi_ref self; /* keeps the JS handle (and so this struct) alive until the callback has run */
  napi_async_context context;
  uv_loop_t *loop;
  uv_work_t work;
  uv_poll_t poll;
  int sock; /* our duplicate of the socket descriptor */
  int file;
  int64_t offset;
  int64_t remaining;
  int64_t sent;
  int64_t pooled; /* of which the thread pool sent */
  int copy; /* reads and writes the bytes instead of sendfile (copy_call) */
  int err;  /* errno of the failure, or 0 */
  int again; /* the last pool turn stopped on a full socket */
  int patient; /* waits for the socket on the pool thread (until a wait times out) */
  volatile int cancelled;
  int polling;
  int working;
  int finishing;
} transfer_t;

static void after_work(uv_work_t *req, int status);
static void finish(transfer_t *t);

/*
 * TCP_CORK for the length of a transfer (nginx's `tcp_nopush`, which it sets around sendfile): the kernel
 * sends only full segments, and each sendfile call takes as much as the socket buffer holds. Node sets
 * TCP_NODELAY on every connection; without the cork, a loopback client got 250-500 KiB per call (about 60
 * calls per 40 MiB, 1.9 GB/s) against 16 MiB with it (about 9 calls, 2.5-3.0 GB/s, as nginx). The headers
 * were written before the cork; finish() takes it off, so the last partial segment is sent at once. A
 * failure to set it only costs speed.
 */
static void cork(int sock, int on) { setsockopt(sock, IPPROTO_TCP, TCP_CORK, &on, sizeof on); }

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* Linux 6.5; the same number on every architecture */
#endif
struct cachestat_range { uint64_t off, len; };
struct cachestat_counts { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; };

/*
 * Whether every page of bytes [offset, offset + length) of `file` is in the page cache, so that a sendfile
 * of them never waits for the disk and the event loop may make it. cachestat(2) counts the cached pages of
 * a range without touching them (microseconds for 16 MiB). It answers only for files this process owns or
 * may write to, as the store's files are; anything else (an error, a refusal, a kernel older than 6.5)
 * counts as not cached: the thread pool sends it. A page evicted between this check and the call is read
 * on the loop: rare, and one read.
 */
static int cached(int file, int64_t offset, size_t length) {
  static long page;
  if (!page) page = sysconf(_SC_PAGESIZE);
  if (length == 0) return 1;
  uint64_t pages = (uint64_t)((offset + (int64_t)length - 1) / page - offset / page + 1);
  struct cachestat_range range = { (uint64_t)offset, (uint64_t)length };
  struct cachestat_counts counts;
  return syscall(__NR_cachestat, file, &range, &counts, 0) == 0 && counts.nr_cache >= pages;
}

/* How one sendfile call went: it took every byte asked, the socket is full, or it failed (t->err). */
enum call_outcome { CALL_WHOLE, CALL_FULL, CALL_FAILED };

/*
 * One sendfile call of the transfer's next bytes (at most MAX_CALL), from whichever thread runs it. A short
 * call means a full socket too: calling again at once would take only what the client read meanwhile (a few
 * hundred KiB a call, the sender and the client taking turns on the CPUs); waiting until the kernel calls the
 * socket writable (a good part of its buffer free) sends in large calls, as nginx's event loop does.
 */
static size_t next_count(const transfer_t *t) { return t->remaining > MAX_CALL ? MAX_CALL : (size_t)t->remaining; }

/*
 * A copying transfer's call: read the next bytes (at most COPY_CHUNK) into this thread's buffer and write
 * them to the socket. For a client on this host (loopback): sendfile hands the socket page-cache pages that
 * the client then copies out of memory, where this copy leaves the bytes in the CPU caches the client reads
 * them from. Measured with skopeo on loopback, 200 MiB warm pulls, Intel (session 18): nginx with sendfile
 * 1.05-1.08 x a direct pull, nginx copying 256 KiB buffers 0.95-1.00 x. The buffer rather than a mapping of
 * the file (which saves one copy): on an AMD EPYC host (session 19) a mapping per call made a curl loop of
 * 40 MiB GETs 1.0-1.2 GB/s, one mapping per 16 MiB 1.3-1.6 (mapping and unmapping, page faults), the buffer
 * 2.1-2.9 and sendfile 2.0-2.5 (nginx 2.1-2.4); warm pulls 0.977 x direct with the buffer, 1.007 with
 * sendfile. The buffer's size (session 21, AMD EPYC, alternating A/B, 6 rounds): curl's 40 MiB GETs 2.3-2.5
 * GB/s with 256 KiB (0.81-0.99 x nginx's sendfile in the same rounds), 3.1 with 512 KiB, 3.3-3.4 with 1 MiB
 * (1.23-1.24 x nginx, every round above it), 3.3 with 4 MiB (one round at 0.57 x); warm skopeo pulls the same
 * with each (0.97-0.99 x direct): fewer calls, and one write still fits the socket's buffer. A file already
 * shorter than the range (or cut short under the transfer) fails with ENODATA, as sendfile's end of file. The
 * buffer is the thread's own (the loop's, or a pool thread's), kept for the process's life: no allocation per
 * call or transfer.
 */
static enum call_outcome copy_call(transfer_t *t) {
  static __thread char *buffer;
  if (!buffer && !(buffer = malloc(COPY_CHUNK))) {
    t->err = ENOMEM;
    return CALL_FAILED;
  }
  size_t count = next_count(t);
  if (count > COPY_CHUNK) count = COPY_CHUNK;
  ssize_t r;
  do r = pread(t->file, buffer, count, (off_t)t->offset);
  while (r < 0 && errno == EINTR);
  if (r <= 0) {
    t->err = r == 0 ? ENODATA : errno;
    return CALL_FAILED;
  }
  ssize_t n;
  do n = write(t->sock, buffer, (size_t)r);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return CALL_FULL;
    t->err = errno;
    return CALL_FAILED;
  }
  t->offset += n;
  t->remaining -= n;
  t->sent += n;
  return n == r ? CALL_WHOLE : CALL_FULL; /* a short read (the end of the file) is not a full socket */
}

static enum call_outcome send_call(transfer_t *t) {
  if (t->copy) return copy_call(t);
  size_t count = next_count(t);
  for (;;) {
    off_t offset = (off_t)t->offset;
    ssize_t n = sendfile(t->sock, t->file, &offset, count);
    if (n > 0) {
      t->offset += n;
      t->remaining -= n;
      t->sent += n;
      return (size_t)n == count ? CALL_WHOLE : CALL_FULL;
    }
    if (n == 0) {
      t->err = ENODATA; /* the file ends before offset + length */
      return CALL_FAILED;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return CALL_FULL;
    t->err = errno;
    return CALL_FAILED;
  }
}

/* Thread pool: send until done, a full socket, an error or a cancel. */
static void send_some(uv_work_t *req) {
  transfer_t *t = req->data;
  t->again = 0;
  while (t->remaining > 0 && !t->cancelled) {
    int64_t before = t->sent;
    enum call_outcome outcome = send_call(t);
    t->pooled += t->sent - before;
    if (outcome == CALL_FAILED) return;
    if (outcome == CALL_WHOLE) continue;
    /* A client that keeps up (a local one) drains the socket within a millisecond: wait here rather
     * than through the event loop and back. One that does not is never waited for here again. */
    struct pollfd p = { .fd = t->sock, .events = POLLOUT };
    if (t->patient && poll(&p, 1, POOL_WAIT_MS) == 1 && (p.revents & POLLOUT)) continue;
    t->patient = 0;
    t->again = 1;
    return;
  }
}

static void queue_send(transfer_t *t) {
  t->working = 1;
  int rc = uv_queue_work(t->loop, &t->work, send_some, after_work);
  if (rc != 0) {
    t->working = 0;
    t->err = -rc;
    finish(t);
  }
}

static void wait_writable(transfer_t *t);

/*
 * Event loop: sends what is cached while the socket takes it whole, then waits for the socket (uv_poll), or
 * hands a part that is not cached to the thread pool; finishes at the end, on an error or a cancel.
 */
static void send_next(transfer_t *t) {
  while (t->remaining > 0 && !t->cancelled) {
    if (!cached(t->file, t->offset, next_count(t))) {
      queue_send(t);
      return;
    }
    if (send_call(t) != CALL_WHOLE) break;
  }
  if (t->err || t->cancelled || t->remaining == 0) finish(t);
  else wait_writable(t);
}

static void on_writable(uv_poll_t *handle, int status, int events) {
  transfer_t *t = handle->data;
  uv_poll_stop(&t->poll);
  t->polling = 0;
  if (status < 0) t->err = -status;
  if (t->err || t->cancelled) finish(t);
  else send_next(t);
}

static void wait_writable(transfer_t *t) {
  int rc = uv_poll_start(&t->poll, UV_WRITABLE | UV_DISCONNECT, on_writable);
  if (rc != 0) {
    t->err = -rc;
    finish(t);
    return;
  }
  t->polling = 1;
}

static void after_work(uv_work_t *req, int status) {
  transfer_t *t = req->data;
  t->working = 0;
  if (status == UV_ECANCELED) t->cancelled = 1;
  if (t->err || t->cancelled || t->remaining == 0 || !t->again) finish(t);
  else wait_writable(t);
}

static void on_closed(uv_handle_t *handle) {
  transfer_t *t = handle->data;
  napi_env env = t->env;
  cork(t->sock, 0); /* the last, partial segment goes now, not after the kernel's 200 ms */
  close(t->sock);
  t->sock = -1;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value callback, receiver, result, argv[3];
  napi_get_reference_value(env, t->callback, &callback);
  napi_get_global(env, &receiver); /* napi_make_callback needs an object */
  napi_create_int32(env, t->err ? t->err : (t->cancelled ? ECANCELED : 0), &argv[0]);
  napi_create_double(env, (double)t->sent, &argv[1]);
  napi_create_double(env, (double)t->pooled, &argv[2]);
  napi_make_callback(env, t->context, receiver, callback, 3, argv, &result);
  napi_delete_reference(env, t->callback);
  napi_async_destroy(env, t->context);
  napi_delete_reference(env, t->self); /* the handle may be collected now; its finalizer frees t */
  napi_close_handle_scope(env, scope);
}

static void finish(transfer_t *t) {
  if (t->finishing) return;
  t->finishing = 1;
  uv_close((uv_handle_t *)&t->poll, on_closed);
}

static void free_transfer(napi_env env, void *data, void *hint) { free(data); }

static int int_arg(napi_env env, napi_value value, int64_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) return 0;
  return napi_get_value_int64(env, value, out) == napi_ok;
}

static napi_value SendFile(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t sock, file, offset, length;
  napi_valuetype callback_type = napi_undefined;
  bool copy = false;
  if (argc == 5 || argc == 6) napi_typeof(env, argv[4], &callback_type);
  if ((argc != 5 && argc != 6) || !int_arg(env, argv[0], &sock) || !int_arg(env, argv[1], &file) || !int_arg(env, argv[2], &offset) ||
      !int_arg(env, argv[3], &length) || callback_type != napi_function || sock < 0 || file < 0 || offset < 0 || length < 0 ||
      (argc == 6 && napi_get_value_bool(env, argv[5], &copy) != napi_ok)) {
    napi_throw_type_error(env, NULL, "sendFile(socketFd, fileFd, offset, length, callback, copy?)");
    return NULL;
  }
  int dup_sock = fcntl((int)sock, F_DUPFD_CLOEXEC, 0); /* never inherited by a child process */
  if (dup_sock < 0) {
    char message[128];
    snprintf(message, sizeof message, "sendFile: cannot duplicate the socket's descriptor (%s)", strerror(errno));
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  transfer_t *t = calloc(1, sizeof(transfer_t));
  if (!t) {
    close(dup_sock);
    napi_throw_error(env, NULL, "sendFile: out of memory");
    return NULL;
  }
  t->env = env;
  t->copy = copy;
  t->sock = dup_sock;
  t->file = (int)file;
  t->offset = offset;
  t->remaining = length;
  t->patient = 1;
  t->work.data = t;
  t->poll.data = t;
  napi_get_uv_event_loop(env, &t->loop);
  int rc = uv_poll_init(t->loop, &t->poll, t->sock);
  if (rc != 0) {
    close(dup_sock);
    free(t);
    napi_throw_error(env, NULL, uv_strerror(rc));
    return NULL;
  }
  napi_value handle, name;
  napi_create_external(env, t, free_transfer, NULL, &handle);
  napi_create_reference(env, handle, 1, &t->self);
  napi_create_reference(env, argv[4], 1, &t->callback);
  napi_create_string_utf8(env, "sendFile", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &t->context);
  cork(t->sock, 1);
  send_next(t); /* never calls back before this returns: finish() closes the poll handle first */
  return handle;
}

/* cancel(transfer): stops a running transfer and shuts its connection down (the client is gone, or the
 * response failed); the callback still runs once, with ECANCELED. No effect once the transfer ended. */
static napi_value Cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  transfer_t *t = NULL;
  if (argc != 1 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok || !t) {
    napi_throw_type_error(env, NULL, "cancel(transfer)");
    return NULL;
  }
  if (t->finishing) return NULL;
  t->cancelled = 1;
  shutdown(t->sock, SHUT_RDWR);
  if (t->polling) {
    uv_poll_stop(&t->poll);
    t->polling = 0;
    finish(t);
  }
  /* else a pool turn is running: it stops at its next call, and after_work finishes */
  return NULL;
}

void register_sha256(napi_env env, napi_value exports); /* sha256.c */

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sendFile", NAPI_AUTO_LENGTH, SendFile, NULL, &fn);
  napi_set_named_property(env, exports, "sendFile", fn);
  napi_create_function(env, "cancel", NAPI_AUTO_LENGTH, Cancel, NULL, &fn);
  napi_set_named_property(env, exports, "cancel", fn);
  register_sha256(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
