import { fstatSync, mkdtempSync, readSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenBlobFiles, type OpenBlobFile } from './open-blob-files.js';

describe('OpenBlobFiles', () => {
  let dir: string;
  let files: OpenBlobFiles;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'open-blob-files-'));
    files = new OpenBlobFiles({ maxIdle: 2, idleMs: 1000 });
  });

  afterEach(() => {
    files.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const contentOf = (file: OpenBlobFile) => {
    const buffer = Buffer.alloc(file.size);
    readSync(file.fd, buffer, 0, file.size, 0);
    return buffer.toString();
  };
  const isOpen = (fd: number) => {
    try {
      fstatSync(fd);
      return true;
    } catch {
      return false;
    }
  };
  /** close() runs on the thread pool: the descriptor is gone a moment later. */
  const closedSoon = async (fd: number) => {
    for (let i = 0; i < 300 && isOpen(fd); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return !isOpen(fd);
  };

  it('hands out one descriptor per file, kept open between readers, with its size', async () => {
    const path = write('a', 'hello');
    const first = await files.acquire(path);
    first.release();
    const [second, third] = await Promise.all([files.acquire(path), files.acquire(path)]);
    expect(second.fd).toBe(first.fd);
    expect(third.fd).toBe(first.fd);
    expect(second.size).toBe(5);
    expect(contentOf(second)).toBe('hello');
    second.release();
    third.release();
    expect(isOpen(first.fd)).toBe(true);
    expect(files.size).toBe(1);
  });

  it('opens a file once for readers arriving together', async () => {
    const path = write('a', 'hello');
    const leases = await Promise.all([files.acquire(path), files.acquire(path), files.acquire(path)]);
    expect(new Set(leases.map((l) => l.fd)).size).toBe(1);
    for (const lease of leases) lease.release();
  });

  it('notices a file deleted behind its back (ENOENT) and closes the old descriptor', async () => {
    const path = write('a', 'hello');
    const first = await files.acquire(path);
    first.release();
    unlinkSync(path);
    await expect(files.acquire(path)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await closedSoon(first.fd)).toBe(true);
    expect(files.size).toBe(0);
  });

  it('opens the new file when the path was replaced, while a reader of the old one keeps reading it', async () => {
    const path = write('a', 'old bytes');
    const old = await files.acquire(path);
    renameSync(write('b', 'new'), path);
    const fresh = await files.acquire(path);
    expect(fresh.fd).not.toBe(old.fd);
    expect(contentOf(fresh)).toBe('new');
    expect(contentOf(old)).toBe('old bytes');
    old.release();
    expect(await closedSoon(old.fd)).toBe(true);
    fresh.release();
  });

  it('forget(): a reader keeps its descriptor until it lets go, and the next reader opens the file again', async () => {
    const path = write('a', 'hello');
    const reader = await files.acquire(path);
    files.forget(path);
    expect(contentOf(reader)).toBe('hello');
    expect(isOpen(reader.fd)).toBe(true);
    reader.release();
    reader.release(); // a second release is ignored
    expect(await closedSoon(reader.fd)).toBe(true);
    const next = await files.acquire(path);
    expect(contentOf(next)).toBe('hello');
    next.release();
  });

  it('keeps at most maxIdle unread descriptors, closing the least recently used', async () => {
    const leases = [];
    for (const name of ['a', 'b', 'c']) {
      const lease = await files.acquire(write(name, name));
      lease.release();
      leases.push(lease);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(files.size).toBe(2);
    expect(await closedSoon(leases[0].fd)).toBe(true);
    expect(isOpen(leases[1].fd) && isOpen(leases[2].fd)).toBe(true);
  });

  it('closes a descriptor nobody read for idleMs, never one being read', async () => {
    const idle = await files.acquire(write('a', 'a'));
    idle.release();
    const busy = await files.acquire(write('b', 'b'));
    await new Promise((resolve) => setTimeout(resolve, 2200));
    expect(await closedSoon(idle.fd)).toBe(true);
    expect(isOpen(busy.fd)).toBe(true);
    busy.release();
  });

  it('close(): hands out nothing cached afterwards and closes held descriptors as they are released', async () => {
    const path = write('a', 'hello');
    const held = await files.acquire(path);
    files.close();
    expect(isOpen(held.fd)).toBe(true);
    held.release();
    expect(await closedSoon(held.fd)).toBe(true);
    const after = await files.acquire(path);
    expect(contentOf(after)).toBe('hello');
    after.release();
    expect(await closedSoon(after.fd)).toBe(true);
    expect(files.size).toBe(0);
  });
});
