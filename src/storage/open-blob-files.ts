import { close, fstat, open, statSync, type Stats } from 'node:fs';
import { promisify } from 'node:util';

const openFile = promisify(open);
const statFile = promisify(fstat);

/** An open stored object: read it with positional reads on `fd`, then `release()` it (once). */
export interface OpenBlobFile {
  readonly fd: number;
  readonly size: number;
  release(): void;
}

export interface OpenBlobFilesOptions {
  /** Open files kept while nobody reads them (least recently used closed first). */
  maxIdle: number;
  /** An unread file is closed after this long. */
  idleMs: number;
}

interface Entry {
  fd: number;
  size: number;
  ino: number;
  dev: number;
  readers: number;
  lastUsed: number;
  /** No longer handed out (deleted, replaced, evicted): closes when its last reader lets go. */
  dropped: boolean;
}

/**
 * File descriptors of stored objects, kept open between reads (nginx's `open_file_cache`): a warm blob
 * GET costs no open, fstat or close on the thread pool, three round trips before its first byte. Each
 * hand-out checks with one stat of the path that the file is still the one that was opened, so an object
 * deleted or replaced behind the store's back is noticed at once, as without the cache (the bytes of an
 * unlinked file would still be right, being addressed by digest, but its space would stay taken).
 * A descriptor closes when its object is deleted through the store, when it has not been read for
 * `idleMs`, or when more than `maxIdle` wait unread; never while a reader holds it.
 */
export class OpenBlobFiles {
  private readonly entries = new Map<string, Entry>();
  private readonly opening = new Map<string, Promise<Entry>>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: OpenBlobFilesOptions) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), Math.max(1000, Math.floor(options.idleMs / 2)));
    this.sweeper.unref();
  }

  /** Open files held (by readers or waiting for one). */
  get size(): number {
    return this.entries.size;
  }

  /** The object at `path` opened for reading; rejects with the open's error (ENOENT when absent). */
  async acquire(path: string): Promise<OpenBlobFile> {
    const cached = this.entries.get(path);
    if (cached && this.stillAt(path, cached)) return this.lease(cached);
    if (cached) this.drop(path, cached);
    let opening = this.opening.get(path);
    if (!opening) {
      opening = this.open(path);
      this.opening.set(path, opening);
      void opening.then(
        () => this.opening.delete(path),
        () => this.opening.delete(path),
      );
    }
    return this.lease(await opening);
  }

  /** The object at `path` was deleted: its descriptor closes once nobody reads it. */
  forget(path: string): void {
    const entry = this.entries.get(path);
    if (entry) this.drop(path, entry);
  }

  /** Closes every descriptor nobody reads, and the others as their readers let go. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const [path, entry] of this.entries) this.drop(path, entry);
  }

  private async open(path: string): Promise<Entry> {
    const fd = await openFile(path, 'r');
    let info: Stats;
    try {
      info = await statFile(fd);
    } catch (err) {
      close(fd, () => undefined);
      throw err;
    }
    const entry: Entry = { fd, size: info.size, ino: info.ino, dev: info.dev, readers: 0, lastUsed: Date.now(), dropped: this.closed };
    if (!entry.dropped) {
      const previous = this.entries.get(path);
      if (previous) this.drop(path, previous);
      this.entries.set(path, entry);
      this.trim();
    }
    return entry;
  }

  private lease(entry: Entry): OpenBlobFile {
    entry.readers += 1;
    let held = true;
    return {
      fd: entry.fd,
      size: entry.size,
      release: () => {
        if (!held) return;
        held = false;
        entry.readers -= 1;
        entry.lastUsed = Date.now();
        if (entry.dropped) this.closeIfUnread(entry);
        else this.trim();
      },
    };
  }

  /** One stat of the path: is it still the file this descriptor has open? */
  private stillAt(path: string, entry: Entry): boolean {
    const info = statSync(path, { throwIfNoEntry: false });
    return info !== undefined && info.ino === entry.ino && info.dev === entry.dev && info.size === entry.size;
  }

  private drop(path: string, entry: Entry): void {
    if (this.entries.get(path) === entry) this.entries.delete(path);
    entry.dropped = true;
    this.closeIfUnread(entry);
  }

  private closeIfUnread(entry: Entry): void {
    if (entry.readers > 0 || entry.fd < 0) return;
    const fd = entry.fd;
    entry.fd = -1;
    close(fd, () => undefined);
  }

  /** Closes the least recently used unread descriptors beyond `maxIdle`. */
  private trim(): void {
    if (this.entries.size <= this.options.maxIdle) return;
    let idle = 0;
    for (const entry of this.entries.values()) if (entry.readers === 0) idle += 1;
    if (idle <= this.options.maxIdle) return;
    const unread = [...this.entries].filter(([, e]) => e.readers === 0).sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    for (const [path, entry] of unread.slice(0, idle - this.options.maxIdle)) this.drop(path, entry);
  }

  private sweep(now: number): void {
    for (const [path, entry] of this.entries) {
      if (entry.readers === 0 && now - entry.lastUsed >= this.options.idleMs) this.drop(path, entry);
    }
  }
}
