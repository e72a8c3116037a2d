/**
 * Cache lifecycle end to end, on the embedded database and on Postgres: purge -> destroy (rows and
 * objects, shared objects kept), concurrent destroy runs (two app instances on one Postgres database),
 * failed destructions retried, cleanup policies (admin API + a run with the time injected), the orphan
 * cleanup, and the `cache:check` command (the built `dist/src/lifecycle/consistency-check.js`).
 */
import { jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { createApp } from '../src/app.factory.js';
import { AppModule } from '../src/app.module.js';
import { CacheEntryCreateOrUpdateService } from '../src/cache-entries/cache-entry-create-or-update.service.js';
import { parseEnvironment } from '../src/config/environment.js';
import { JobName, QUEUE_DRIVER, type QueueDriver } from '../src/jobs/queue-driver.js';
import { CacheDestructionService, type DestructionReport } from '../src/lifecycle/cache-destruction.service.js';
import { CleanupPolicyRunner } from '../src/lifecycle/cleanup-policy-runner.service.js';
import { CLOCK, type Clock } from '../src/lifecycle/clock.js';
import { LifecycleJobs } from '../src/lifecycle/lifecycle-jobs.service.js';
import { OrphanCleanupService } from '../src/lifecycle/orphan-cleanup.service.js';
import { BLOB_STORE, blobContentPath, type BlobStore } from '../src/storage/blob-store.js';
import { AdminApi, eventually } from './support/admin-api.js';
import { metricValue } from './support/cache-observation.js';
import { createScratchDatabase, databaseTargets, startTestApp, TEST_ADMIN_TOKEN, type DatabaseTarget, type TestApp } from './support/test-app.js';

const DAY = 24 * 60 * 60 * 1000;
const POLICY = (group: number | string) => `/api/v4/groups/${group}/-/virtual_registries/cleanup/policy`;
const CHECK_COMMAND = join(process.cwd(), 'dist/src/lifecycle/consistency-check.js');

interface Row {
  id: number;
  upstreamId: number;
  relativePath: string;
  digest: string;
  size: number;
  status: string;
  errorMessage: string | null;
}

async function rowsOf(db: DataSource, where = 'true', params: unknown[] = []): Promise<Row[]> {
  const rows = (await db.query(
    `SELECT id, upstream_id, relative_path, digest, size, status, error_message FROM cache_entries WHERE ${where} ORDER BY id`,
    params,
  )) as { id: string; upstream_id: number; relative_path: string; digest: string; size: string; status: string; error_message: string | null }[];
  return rows.map((r) => ({
    id: Number(r.id),
    upstreamId: r.upstream_id,
    relativePath: r.relative_path,
    digest: r.digest,
    size: Number(r.size),
    status: r.status,
    errorMessage: r.error_message,
  }));
}

/** Commits `bytes` to the app's blob store (as a fill does) and returns the digest. */
async function storeObject(app: INestApplicationContext, bytes: Buffer): Promise<string> {
  const writer = await app.get<BlobStore>(BLOB_STORE).create();
  await writer.append(bytes);
  return (await writer.commit()).digest;
}

/** A cache entry as a fill leaves it: the object committed, then the row through CreateOrUpdate. */
async function seedEntry(app: INestApplicationContext, upstreamId: number, relativePath: string, bytes: Buffer): Promise<Row> {
  const digest = await storeObject(app, bytes);
  const entry = await app
    .get(CacheEntryCreateOrUpdateService)
    .execute(null, { upstreamId, relativePath, digest, size: bytes.length }, { skipPermissionCheck: true });
  return { id: entry.id, upstreamId, relativePath: entry.relativePath, digest, size: bytes.length, status: entry.status, errorMessage: null };
}

const objectPath = (dataDir: string, digest: string) => join(dataDir, 'blobs', blobContentPath(digest));
const hoursAgo = (hours: number) => new Date(Date.now() - hours * 60 * 60 * 1000);

function runCheck(env: Record<string, string>, args: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CHECK_COMMAND, ...args],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe.each(databaseTargets())('cache lifecycle (%s database)', (database: DatabaseTarget) => {
  let app: TestApp;
  let admin: AdminApi;
  let db: DataSource;
  let blobs: BlobStore;
  let destruction: CacheDestructionService;
  let port = 42000;

  /** A group with one registry and `count` upstreams, through the admin API. */
  const groupWithUpstreams = async (name: string, count: number) => {
    const group = await admin.createGroup(`${name}-${database}`);
    const registry = (await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name })).body;
    const upstreamIds: number[] = [];
    for (let i = 0; i < count; i++) {
      const upstream = (
        await admin.expect(201, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, {
          name: `${name}-${i}`,
          url: `http://127.0.0.1:${port++}`,
        })
      ).body;
      upstreamIds.push(upstream.id);
    }
    return { groupId: group.id as number, upstreamIds };
  };

  beforeAll(async () => {
    app = await startTestApp({}, { database });
    admin = new AdminApi(app.url);
    db = app.app.get(DataSource);
    blobs = app.app.get<BlobStore>(BLOB_STORE);
    destruction = app.app.get(CacheDestructionService);
  }, 60_000);

  afterAll(async () => {
    await app?.close();
  });

  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('purge -> destroy leaves no rows and no objects of the upstream, and keeps objects another upstream still serves', async () => {
    const {
      upstreamIds: [purged, other],
    } = await groupWithUpstreams('purge', 2);
    const own = await seedEntry(app.app, purged, '/library/alpine/blobs/own', randomBytes(4096));
    const manifest = await seedEntry(app.app, purged, '/library/alpine/manifests/latest', randomBytes(512));
    // The tag and its digest path share one object (as the pull path records a tag manifest).
    const byDigest = await app.app
      .get(CacheEntryCreateOrUpdateService)
      .execute(
        null,
        { upstreamId: purged, relativePath: `/library/alpine/manifests/${manifest.digest}`, digest: manifest.digest, size: manifest.size },
        { skipPermissionCheck: true },
      );
    const sharedBytes = randomBytes(8192);
    const shared = await seedEntry(app.app, purged, '/library/alpine/blobs/shared', sharedBytes);
    const kept = await seedEntry(app.app, other, '/library/alpine/blobs/shared', sharedBytes);
    expect(kept.digest).toBe(shared.digest);
    // A superseded row of the purged upstream (a tag that moved) shares nothing.
    await db.query(`UPDATE cache_entries SET status = 'pending_destruction' WHERE id = $1`, [byDigest.id]);

    // Counted from before the purge: the purge enqueues its destruction itself, which may run at once.
    const entriesBefore = await metricValue(app, 'registry_lifecycle_entries_total', { job: 'destroy', action: 'deleted' });
    await admin.expect(204, 'DELETE', `/api/v4/virtual_registries/container/upstreams/${purged}/cache`);
    await eventually(async () => (await rowsOf(db, 'upstream_id = $1 AND status = $2', [purged, 'default'])).length === 0);

    // Through the queue, as the purge's follow-up and the minute repeat run it.
    await app.app.get(LifecycleJobs).enqueueDestroy();
    await eventually(async () => (await rowsOf(db, 'upstream_id = $1', [purged])).length === 0);

    for (const digest of [own.digest, manifest.digest]) expect(await blobs.stat(digest)).toBeUndefined();
    expect(await blobs.stat(shared.digest)).toEqual({ size: sharedBytes.length });
    expect(await rowsOf(db, 'upstream_id = $1', [other])).toEqual([{ ...kept, status: 'default' }]);
    const served = await blobs.createReadStream(shared.digest);
    const chunks: Buffer[] = [];
    for await (const chunk of served) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(sharedBytes)).toBe(true);
    await eventually(async () => (await metricValue(app, 'registry_lifecycle_entries_total', { job: 'destroy', action: 'deleted' })) - entriesBefore === 4);

    // Idempotent: nothing left to do.
    expect(await destruction.destroyPending()).toMatchObject({ entries: 0, objects: 0, failed: 0 });
  });

  it('a failed object deletion leaves the entry in error with the reason, and a later run retries it', async () => {
    const {
      upstreamIds: [upstream],
    } = await groupWithUpstreams('failing', 1);
    const entry = await seedEntry(app.app, upstream, '/stuck/blobs/one', randomBytes(1024));
    // Something the store cannot unlink sits where the object was (a non-empty directory).
    const path = objectPath(app.dataDir, entry.digest);
    rmSync(path);
    mkdirSync(path);
    writeFileSync(join(path, 'x'), 'x');
    await db.query(`UPDATE cache_entries SET status = 'pending_destruction' WHERE id = $1`, [entry.id]);

    const failedRun = await destruction.destroyPending();
    expect(failedRun).toMatchObject({ entries: 0, objects: 0, failed: 1 });
    const [errored] = await rowsOf(db, 'id = $1', [entry.id]);
    expect(errored.status).toBe('error');
    expect(errored.errorMessage).toMatch(/could not delete the object/);

    // Not retried before the delay...
    expect(await destruction.destroyPending()).toMatchObject({ requeued: 0, failed: 0 });
    expect((await rowsOf(db, 'id = $1', [entry.id]))[0].status).toBe('error');
    // ...then retried, and this time the store can delete it.
    rmSync(path, { recursive: true });
    expect(await destruction.destroyPending({ retryAfterMs: 0 })).toMatchObject({ requeued: 1, entries: 1, objects: 1, failed: 0 });
    expect(await rowsOf(db, 'id = $1', [entry.id])).toEqual([]);
  });

  it('rows claimed by a worker that died are claimed again after the reclaim delay', async () => {
    const {
      upstreamIds: [upstream],
    } = await groupWithUpstreams('reclaim', 1);
    const entry = await seedEntry(app.app, upstream, '/dead/blobs/one', randomBytes(1024));
    await db.query(`UPDATE cache_entries SET status = 'processing' WHERE id = $1`, [entry.id]);
    expect(await destruction.destroyPending()).toMatchObject({ requeued: 0, entries: 0 });
    expect(await destruction.destroyPending({ reclaimAfterMs: 0 })).toMatchObject({ requeued: 1, entries: 1, objects: 1 });
    expect(await blobs.stat(entry.digest)).toBeUndefined();
  });

  it('an entry recorded for the digest after the run decided to delete its object (a pull right after a purge) keeps the object', async () => {
    const {
      upstreamIds: [purged, pulling],
    } = await groupWithUpstreams('refilled', 2);
    const bytes = randomBytes(2048);
    const entry = await seedEntry(app.app, purged, '/refilled/blobs/one', bytes);
    await db.query(`UPDATE cache_entries SET status = 'pending_destruction' WHERE id = $1`, [entry.id]);
    // The run claims the row and decides it owns the object; before it deletes the object, a fill through
    // another upstream finds the same bytes stored and records its entry (as seedEntry does).
    let refilled: Row | undefined;
    const run = destruction as unknown as { settleRows: (...args: unknown[]) => Promise<unknown[]> }; // its step 2
    const settleRows = run.settleRows.bind(destruction);
    jest.spyOn(run, 'settleRows').mockImplementation(async (...args: unknown[]) => {
      const owned = await settleRows(...args);
      refilled ??= await seedEntry(app.app, pulling, '/refilled/blobs/one', bytes);
      return owned;
    });

    const report = await destruction.destroyPending();
    expect(refilled?.digest).toBe(entry.digest);
    expect(report).toMatchObject({ entries: 1, objects: 0, failed: 0 });
    expect(await blobs.stat(entry.digest)).toMatchObject({ size: bytes.length });
    expect(await rowsOf(db, 'id = $1', [entry.id])).toEqual([]);
    expect(await rowsOf(db, 'digest = $1', [entry.digest])).toEqual([expect.objectContaining({ id: refilled!.id, upstreamId: pulling, status: 'default' })]);
    // Nothing is left for a later run to delete.
    expect(await destruction.destroyPending()).toMatchObject({ entries: 0, objects: 0 });
    expect(await blobs.stat(entry.digest)).toBeDefined();
  });

  (database === 'postgres' ? it : it.skip)(
    'a pending row another transaction holds for a moment (a download-time flush) is destroyed by the same run, not left for the next',
    async () => {
      const {
        upstreamIds: [upstream],
      } = await groupWithUpstreams('held', 1);
      const entry = await seedEntry(app.app, upstream, '/held/blobs/one', randomBytes(1024));
      await db.query(`UPDATE cache_entries SET status = 'pending_destruction' WHERE id = $1`, [entry.id]);
      const holder = db.createQueryRunner();
      await holder.connect();
      try {
        await holder.startTransaction();
        await holder.query(`SELECT id FROM cache_entries WHERE id = $1 FOR UPDATE`, [entry.id]);
        const run = destruction.destroyPending();
        await new Promise((resolve) => setTimeout(resolve, 300)); // the run's first claim skips the row
        await holder.commitTransaction();
        expect(await run).toMatchObject({ entries: 1, objects: 1, failed: 0 });
      } finally {
        if (holder.isTransactionActive) await holder.rollbackTransaction();
        await holder.release();
      }
      expect(await rowsOf(db, 'id = $1', [entry.id])).toEqual([]);
      expect(await blobs.stat(entry.digest)).toBeUndefined();
    },
  );

  it(
    database === 'postgres'
      ? 'two app instances on one database destroy at the same time: every row and object exactly once, no deadlock'
      : 'two destroy runs at once on the embedded database: every row and object exactly once',
    async () => {
      const { upstreamIds } = await groupWithUpstreams('concurrent', 3);
      const [a, b, live] = upstreamIds;
      // 60 digests: each in several pending rows spread over both upstreams, a third also in a live row.
      const digests: { digest: string; size: number; referenced: boolean }[] = [];
      for (let i = 0; i < 60; i++) {
        const bytes = randomBytes(256 + i);
        const first = await seedEntry(app.app, a, `/c/blobs/${i}`, bytes);
        await seedEntry(app.app, b, `/c/blobs/${i}`, bytes);
        await seedEntry(app.app, a, `/c/manifests/tag-${i}`, bytes);
        await seedEntry(app.app, b, `/c/manifests/tag-${i}`, bytes);
        const referenced = i % 3 === 0;
        if (referenced) await seedEntry(app.app, live, `/c/blobs/${i}`, bytes);
        digests.push({ digest: first.digest, size: bytes.length, referenced });
      }
      await db.query(`UPDATE cache_entries SET status = 'pending_destruction' WHERE upstream_id = ANY($1::int[])`, [[a, b]]);
      const pending = (await rowsOf(db, 'upstream_id = ANY($1::int[])', [[a, b]])).length;
      expect(pending).toBe(240);

      let second: INestApplicationContext | undefined;
      let instances: INestApplicationContext[] = [app.app];
      if (database === 'postgres') {
        second = await startSecondInstance(app);
        instances = [app.app, second];
      }
      try {
        const deletions = new Map<string, number>();
        for (const instance of instances) {
          const store = instance.get<BlobStore>(BLOB_STORE);
          const original = store.delete.bind(store);
          jest.spyOn(store, 'delete').mockImplementation(async (digest: string) => {
            deletions.set(digest, (deletions.get(digest) ?? 0) + 1);
            await original(digest);
          });
        }
        const runners = database === 'postgres' ? instances : [app.app, app.app];
        const reports: DestructionReport[] = await Promise.all(
          runners.map((instance) => instance.get(CacheDestructionService).destroyPending({ batchSize: 7 })),
        );

        expect(reports.every((r) => r.failed === 0)).toBe(true);
        expect(reports.every((r) => r.entries > 0)).toBe(true); // both really took part
        expect(await rowsOf(db, 'upstream_id = ANY($1::int[])', [[a, b]])).toEqual([]);
        expect(await rowsOf(db, `status <> 'default'`)).toEqual([]);
        const unreferenced = digests
          .filter((d) => !d.referenced)
          .map((d) => d.digest)
          .sort();
        expect([...deletions.keys()].sort()).toEqual(unreferenced);
        expect([...deletions.values()].every((n) => n === 1)).toBe(true);
        for (const d of digests) expect(Boolean(await blobs.stat(d.digest))).toBe(d.referenced);
        expect((await rowsOf(db, 'upstream_id = $1', [live])).length).toBe(20);
      } finally {
        await second?.close();
      }
    },
    120_000,
  );

  describe('cleanup policies', () => {
    let groupId: number;
    let upstreamId: number;

    beforeAll(async () => {
      ({
        groupId,
        upstreamIds: [upstreamId],
      } = await groupWithUpstreams('policy', 1));
    });

    it("are absent until created; created with GitLab's defaults; one per group", async () => {
      expect((await admin.request('GET', POLICY(groupId))).status).toBe(404);
      const created = await admin.expect(201, 'POST', POLICY(groupId), {});
      expect(created.body).toMatchObject({
        group_id: groupId,
        enabled: false,
        keep_n_days_after_download: 30,
        cadence: 7,
        status: 'scheduled',
        last_run_at: null,
        last_run_deleted_entries_count: 0,
        last_run_deleted_size: 0,
        last_run_duration: null,
        failure_message: null,
        last_run_detailed_metrics: {},
      });
      const nextRun = Date.parse(created.body.next_run_at) - Date.now();
      expect(Math.abs(nextRun - 7 * DAY)).toBeLessThan(60_000);
      const again = await admin.request('POST', POLICY(groupId), { enabled: true });
      expect(again.status).toBe(400);
      expect(again.body.message).toEqual({ group: ['has already been taken'] });
      // The group path works as well as its id.
      const byPath = await admin.expect(200, 'GET', POLICY(`policy-${database}`));
      expect(byPath.body.group_id).toBe(groupId);
    });

    it('validate their fields (400) and need at least one field to update', async () => {
      for (const body of [
        { keep_n_days_after_download: 0 },
        { keep_n_days_after_download: 366 },
        { keep_n_days_after_download: 7.5 },
        { keep_n_days_after_download: '7' },
        { cadence: 3 },
        { enabled: 'yes' },
      ]) {
        const res = await admin.request('PATCH', POLICY(groupId), body);
        expect([JSON.stringify(body), res.status]).toEqual([JSON.stringify(body), 400]);
      }
      const empty = await admin.request('PATCH', POLICY(groupId), {});
      expect(empty.status).toBe(400);
      expect(empty.body.message).toMatch(/at least one parameter must be provided/);
      const viaPut = await admin.expect(200, 'PUT', POLICY(groupId), { cadence: 14 });
      expect(viaPut.body.cadence).toBe(14);
      expect(Math.abs(Date.parse(viaPut.body.next_run_at) - Date.now() - 14 * DAY)).toBeLessThan(60_000);
    });

    it('belong to the group owner: a maintainer gets 403, a stranger 404', async () => {
      const maintainer = admin.as(await admin.createUserToken(`policy-maintainer-${database}`, { groupId, role: 'maintainer' }));
      const stranger = admin.as(await admin.createUserToken(`policy-stranger-${database}`));
      const owner = admin.as(await admin.createUserToken(`policy-owner-${database}`, { groupId, role: 'owner' }));
      expect((await maintainer.request('GET', POLICY(groupId))).status).toBe(403);
      expect((await maintainer.request('PATCH', POLICY(groupId), { enabled: true })).status).toBe(403);
      expect((await maintainer.request('DELETE', POLICY(groupId))).status).toBe(403);
      expect((await stranger.request('GET', POLICY(groupId))).status).toBe(404);
      expect((await owner.request('GET', POLICY(groupId))).status).toBe(200);
      expect((await admin.request('GET', POLICY(999999))).status).toBe(404);
    });

    it('keep_n_days_after_download=7 removes exactly the entries last downloaded more than 7 days ago (time injected)', async () => {
      const clock = app.app.get<Clock>(CLOCK);
      const createdAt = new Date(Date.now() + 3 * DAY); // as if the policy were enabled three days from now
      const now = new Date(createdAt.getTime() + DAY + 60_000); // one daily cadence later
      const time = jest.spyOn(clock, 'now').mockReturnValue(createdAt);
      await admin.expect(204, 'DELETE', POLICY(groupId));
      const policy = await admin.expect(201, 'POST', POLICY(groupId), { enabled: true, keep_n_days_after_download: 7, cadence: 1 });
      expect(Date.parse(policy.body.next_run_at)).toBe(createdAt.getTime() + DAY);

      const other = await groupWithUpstreams('policy-other', 1);
      const downloaded = async (upstream: number, path: string, at: Date) => {
        const entry = await seedEntry(app.app, upstream, path, randomBytes(300 + path.length));
        await db.query(`UPDATE cache_entries SET downloaded_at = $2 WHERE id = $1`, [entry.id, at]);
        return entry;
      };
      const justOver = await downloaded(upstreamId, '/p/blobs/just-over', new Date(now.getTime() - 7 * DAY - 60_000));
      const longAgo = await downloaded(upstreamId, '/p/blobs/long-ago', new Date(now.getTime() - 40 * DAY));
      const justUnder = await downloaded(upstreamId, '/p/blobs/just-under', new Date(now.getTime() - 7 * DAY + 60_000));
      const recent = await downloaded(upstreamId, '/p/manifests/recent', new Date(now.getTime() - 60_000));
      const otherGroup = await downloaded(other.upstreamIds[0], '/p/blobs/long-ago', new Date(now.getTime() - 40 * DAY));

      const runner = app.app.get(CleanupPolicyRunner);
      time.mockReturnValue(new Date(now.getTime() - 2 * 60_000)); // not due yet
      expect(await runner.runDuePolicies()).toEqual([]);

      time.mockReturnValue(now);
      const runs = await runner.runDuePolicies();
      expect(runs).toEqual([expect.objectContaining({ groupId, status: 'scheduled', deletedEntries: 2, deletedSize: justOver.size + longAgo.size })]);
      const status = async (entry: Row) => (await rowsOf(db, 'id = $1', [entry.id]))[0]?.status;
      expect(await status(justOver)).toBe('pending_destruction');
      expect(await status(longAgo)).toBe('pending_destruction');
      expect(await status(justUnder)).toBe('default');
      expect(await status(recent)).toBe('default');
      expect(await status(otherGroup)).toBe('default');

      const after = await admin.expect(200, 'GET', POLICY(groupId));
      expect(after.body).toMatchObject({
        status: 'scheduled',
        last_run_at: now.toISOString(),
        next_run_at: new Date(now.getTime() + DAY).toISOString(),
        last_run_deleted_entries_count: 2,
        last_run_deleted_size: justOver.size + longAgo.size,
        failure_message: null,
        last_run_detailed_metrics: { container: { deleted_entries_count: 2, deleted_size: justOver.size + longAgo.size } },
      });
      expect(after.body.last_run_duration).toBeGreaterThanOrEqual(0);
      expect(await runner.runDuePolicies()).toEqual([]); // the next run is a cadence away
      expect(await metricValue(app, 'registry_lifecycle_entries_total', { job: 'cleanup_policy', action: 'marked' })).toBeGreaterThanOrEqual(2);

      await destruction.destroyPending();
      expect(await status(justOver)).toBeUndefined();
      expect(await blobs.stat(longAgo.digest)).toBeUndefined();
      expect(await blobs.stat(justUnder.digest)).toBeDefined();
    });

    it('a disabled policy never runs; deleting it answers 204, then 404', async () => {
      const clock = app.app.get<Clock>(CLOCK);
      await admin.expect(200, 'PATCH', POLICY(groupId), { enabled: false });
      jest.spyOn(clock, 'now').mockReturnValue(new Date(Date.now() + 400 * DAY));
      expect(await app.app.get(CleanupPolicyRunner).runDuePolicies()).toEqual([]);
      await admin.expect(204, 'DELETE', POLICY(groupId));
      expect((await admin.request('DELETE', POLICY(groupId))).status).toBe(404);
      expect((await admin.request('GET', POLICY(groupId))).status).toBe(404);
    });
  });

  it('the orphan job removes a planted orphan object and a stale temp object, and marks an entry whose object was deleted by hand', async () => {
    const {
      upstreamIds: [upstream],
    } = await groupWithUpstreams('orphans', 1);
    const intact = await seedEntry(app.app, upstream, '/o/blobs/intact', randomBytes(2048));
    const lost = await seedEntry(app.app, upstream, '/o/blobs/lost', randomBytes(2048));
    rmSync(objectPath(app.dataDir, lost.digest)); // deleted by hand

    const orphan = await storeObject(app.app, randomBytes(4096));
    utimesSync(objectPath(app.dataDir, orphan), hoursAgo(2), hoursAgo(2));
    const freshOrphan = await storeObject(app.app, randomBytes(4096)); // a fill between commit and row
    const staleTemp = join(app.dataDir, 'blobs', '_uploads', randomUUID());
    const freshTemp = join(app.dataDir, 'blobs', '_uploads', randomUUID());
    mkdirSync(dirname(staleTemp), { recursive: true });
    writeFileSync(staleTemp, randomBytes(100));
    writeFileSync(freshTemp, randomBytes(100));
    utimesSync(staleTemp, hoursAgo(2), hoursAgo(2));

    const report = await app.app.get(OrphanCleanupService).clean();
    expect(report.repaired).toMatchObject({ markedEntries: 1, deletedObjects: 1, deletedBytes: 4096, deletedTemporaryObjects: 1 });
    expect(report.entriesWithoutObject.samples).toEqual([`${lost.digest} (entry ${lost.id})`]);
    expect(report.recentObjectsWithoutEntry.count).toBeGreaterThanOrEqual(1);
    expect(await blobs.stat(orphan)).toBeUndefined();
    expect(await blobs.stat(freshOrphan)).toEqual({ size: 4096 });
    expect(existsSync(staleTemp)).toBe(false);
    expect(existsSync(freshTemp)).toBe(true);
    expect((await rowsOf(db, 'id = $1', [lost.id]))[0]).toMatchObject({ status: 'pending_destruction', errorMessage: 'object missing from storage' });
    expect((await rowsOf(db, 'id = $1', [intact.id]))[0].status).toBe('default');
    expect(await metricValue(app, 'registry_lifecycle_objects_deleted_total', { job: 'orphans', kind: 'temporary' })).toBeGreaterThanOrEqual(1);

    // Idempotent.
    expect((await app.app.get(OrphanCleanupService).clean()).repaired).toMatchObject({ markedEntries: 0, deletedObjects: 0, deletedTemporaryObjects: 0 });
    rmSync(freshTemp);
    await blobs.delete(freshOrphan);
    await destruction.destroyPending();
    expect(await rowsOf(db, 'id = $1', [lost.id])).toEqual([]);
  });

  const commandSuite = existsSync(CHECK_COMMAND) ? it : it.skip;
  commandSuite(
    `cache:check reports missing objects, orphans and temp leftovers (exit 1), --fix repairs them, then exit 0${existsSync(CHECK_COMMAND) ? '' : ' (skipped: run npm run build first)'}`,
    async () => {
      // The command needs the database to itself when it is embedded: use an app whose data outlives it.
      const target = database === 'postgres' ? await ownPostgresApp() : await ownEmbeddedApp();
      try {
        const ctx = target.app;
        const api = new AdminApi(target.url);
        const group = await api.createGroup(`check-${database}`);
        const registry = (await api.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'check' })).body;
        const upstream = (
          await api.expect(201, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, {
            name: 'check',
            url: 'http://127.0.0.1:9',
          })
        ).body;
        await seedEntry(ctx, upstream.id, '/k/blobs/intact', randomBytes(1000));
        const lost = await seedEntry(ctx, upstream.id, '/k/blobs/lost', randomBytes(1000));
        rmSync(objectPath(target.dataDir, lost.digest));
        const orphan = await storeObject(ctx, randomBytes(3000));
        utimesSync(objectPath(target.dataDir, orphan), hoursAgo(2), hoursAgo(2));
        const temp = join(target.dataDir, 'blobs', '_uploads', randomUUID());
        mkdirSync(dirname(temp), { recursive: true });
        writeFileSync(temp, 'partial');
        utimesSync(temp, hoursAgo(2), hoursAgo(2));
        if (database === 'embedded') await target.stop();

        const env = { DATA_DIR: target.dataDir, ...(target.databaseUrl ? { DATABASE_URL: target.databaseUrl } : {}) };
        const found = await runCheck(env);
        expect([found.code, found.stderr]).toEqual([1, '']);
        expect(found.stdout).toContain('live entries whose object is missing: 1');
        expect(found.stdout).toContain(`${lost.digest} (entry ${lost.id})`);
        expect(found.stdout).toContain('objects without a cache entry, older than 1 h: 1 (2.9 KiB)');
        expect(found.stdout).toContain('temporary objects older than 1 h: 1');
        expect(found.stdout).toMatch(/INCONSISTENT\n$/);

        const json = JSON.parse((await runCheck(env, ['--json'])).stdout) as { consistent: boolean; found: { objectsWithoutEntry: { samples: string[] } } };
        expect(json.consistent).toBe(false);
        expect(json.found.objectsWithoutEntry.samples[0]).toContain(orphan);

        const fixed = await runCheck(env, ['--fix']);
        expect([fixed.code, fixed.stderr]).toEqual([0, '']);
        expect(fixed.stdout).toContain('repaired: 1 entry marked for destruction, 1 object(s) deleted (2.9 KiB), 1 temporary object(s) deleted');
        expect(fixed.stdout).toMatch(/after the repair:[\s\S]*consistent\n$/);

        const clean = await runCheck(env);
        expect([clean.code, clean.stdout]).toEqual([0, expect.stringContaining('live entries whose object is missing: 0')]);
        expect((await runCheck(env, ['--nonsense'])).code).toBe(2);
      } finally {
        await target.close();
      }
    },
    120_000,
  );
});

const withRedis = process.env.REDIS_URL ? describe : describe.skip;
withRedis(`lifecycle jobs on BullMQ${process.env.REDIS_URL ? '' : ' (skipped: REDIS_URL is unset)'}`, () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({ REDIS_URL: process.env.REDIS_URL });
  }, 60_000);

  afterAll(async () => {
    await app?.close();
  });

  it('runs the destroy and orphan jobs through Redis', async () => {
    const admin = new AdminApi(app.url);
    const group = await admin.createGroup('bullmq-lifecycle');
    const registry = (await admin.expect(201, 'POST', `/api/v4/groups/${group.id}/-/virtual_registries/container/registries`, { name: 'r' })).body;
    const upstream = (
      await admin.expect(201, 'POST', `/api/v4/virtual_registries/container/registries/${registry.id}/upstreams`, { name: 'u', url: 'http://127.0.0.1:9' })
    ).body;
    const db = app.app.get(DataSource);
    const blobs = app.app.get<BlobStore>(BLOB_STORE);
    const doomed = await seedEntry(app.app, upstream.id, '/q/blobs/doomed', randomBytes(500));
    const lost = await seedEntry(app.app, upstream.id, '/q/blobs/lost', randomBytes(500));
    await db.query(`UPDATE cache_entries SET status = 'pending_destruction' WHERE id = $1`, [doomed.id]);
    rmSync(objectPath(app.dataDir, lost.digest));

    await app.app.get(LifecycleJobs).enqueueDestroy();
    await eventually(async () => (await rowsOf(db, 'id = $1', [doomed.id])).length === 0, 20_000);
    expect(await blobs.stat(doomed.digest)).toBeUndefined();

    // The orphan job marks the entry without object and enqueues the destroy run, which removes it.
    await app.app.get<QueueDriver>(QUEUE_DRIVER).add(JobName.CLEAN_ORPHANS, {}, { jobId: 'clean-orphans-now' });
    await eventually(async () => (await rowsOf(db, 'id = $1', [lost.id])).length === 0, 20_000);
  }, 60_000);
});

/** A second application instance (no HTTP) on the same database and storage as `app`. */
async function startSecondInstance(app: TestApp): Promise<INestApplicationContext> {
  const url = (app.app.get(DataSource).options as { url: string }).url;
  const env = parseEnvironment({
    LOG_LEVEL: 'warn',
    DATA_DIR: app.dataDir,
    DATABASE_URL: url,
    INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    UPSTREAM_ALLOW_PRIVATE: 'true',
  });
  return NestFactory.createApplicationContext(AppModule.forRoot(env), { logger: ['error', 'warn'] });
}

interface OwnApp {
  app: NestFastifyApplication;
  url: string;
  dataDir: string;
  databaseUrl?: string;
  /** Stops the app, keeping its data. */
  stop(): Promise<void>;
  /** Stops it (if running) and deletes its data. */
  close(): Promise<void>;
}

async function startOwnApp(databaseUrl?: string, dropDatabase?: () => Promise<void>): Promise<OwnApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cvr-check-'));
  const app = await createApp(
    parseEnvironment({
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      INITIAL_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      UPSTREAM_ALLOW_PRIVATE: 'true',
      HOST: '127.0.0.1',
    }),
  );
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  let running = true;
  const stop = async () => {
    if (running) await app.close();
    running = false;
  };
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    databaseUrl,
    stop,
    async close() {
      await stop();
      await dropDatabase?.();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const ownEmbeddedApp = () => startOwnApp();

async function ownPostgresApp(): Promise<OwnApp> {
  const { url, drop } = await createScratchDatabase();
  return startOwnApp(url, drop);
}
