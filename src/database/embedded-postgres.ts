import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/**
 * The zero-setup database: PostgreSQL compiled to WASM (PGlite), served on a loopback
 * socket so the ordinary `pg` driver (and TypeORM) talk to it like to a real server.
 * Data lives in `<DATA_DIR>/pgdata`; a second start reuses it.
 */
export class EmbeddedPostgres {
  private db?: PGlite;
  private server?: PGLiteSocketServer;

  constructor(
    private readonly dataDir: string,
    private readonly maxConnections: number,
  ) {}

  get directory(): string {
    return join(this.dataDir, 'pgdata');
  }

  /** Starts PGlite and its socket server; returns a postgres:// URL for the pg driver. */
  async start(): Promise<string> {
    if (this.server) return this.url();
    mkdirSync(this.dataDir, { recursive: true });
    this.db = await PGlite.create(this.directory);
    this.server = new PGLiteSocketServer({
      db: this.db,
      host: '127.0.0.1',
      port: 0,
      // The pg pool must never open more connections than the socket server accepts.
      maxConnections: this.maxConnections + 2,
    });
    await this.server.start();
    return this.url();
  }

  url(): string {
    if (!this.server) throw new Error('embedded postgres is not started');
    return `postgres://postgres:postgres@${this.server.getServerConn()}/postgres?sslmode=disable`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    const db = this.db;
    this.server = undefined;
    this.db = undefined;
    await server?.stop();
    await db?.close();
  }
}
