import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Inject, Injectable, Logger, NotFoundException, OnApplicationBootstrap, OnModuleInit } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, In, Repository } from 'typeorm';
import type { Actor } from '../accounts/actor.js';
import { GroupPermission } from '../accounts/actor.js';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { JobName, QUEUE_DRIVER, type QueueDriver, type QueuedJob } from '../jobs/queue-driver.js';
import {
  Digest,
  ManifestReference,
  OciError,
  OciErrorCode,
  RepositoryName,
  parseManifestDescriptors,
  readManifestBody,
  type Descriptor,
  type Platform,
} from '../oci/index.js';
import { ProxyBlobStore } from '../proxy/proxy-blob-store.js';
import type { PullResponse } from '../proxy/pull-response.js';
import type { PullTarget } from '../upstreams/pull-target.js';
import { UpstreamsService } from '../upstreams/upstreams.service.js';
import { ProxyManifestStore } from '../proxy/proxy-manifest-store.js';
import { RegistriesService } from '../registries/registries.service.js';
import { Prefetch, PrefetchImage, PrefetchImageStatus } from './prefetch.entity.js';
import type { ImageReference } from './image-reference.js';

/** The data of a PREFETCH_IMAGE job. */
export interface PrefetchJobData {
  imageId: number;
}

/** Tries of a prefetch job whose upstreams were unavailable; other failures are final at once. */
export const PREFETCH_ATTEMPTS = 3;

export interface PrefetchWithImages {
  prefetch: Prefetch;
  images: PrefetchImage[];
}

interface Progress {
  manifests: number;
  blobs: number;
  bytes: number;
}

/** A failure of the prefetch itself (not of the pull path): its message is the reason shown. */
class PrefetchFailure extends Error {}

const prefetchNotFound = () => new NotFoundException({ message: '404 Prefetch Not Found' });

function jobIdOf(imageId: number): string {
  return `prefetch-image-${imageId}`;
}

/** `os/arch[/variant]`. */
export function platformString(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

function platformMatches(platform: Platform | undefined, wanted: string): boolean {
  if (!platform) return false;
  const [os, architecture, variant] = wanted.split('/');
  return platform.os === os && platform.architecture === architecture && (variant === undefined || platform.variant === variant);
}

/** What a client of the admin API is told about a failure: the answer a pull client would have had. */
export function describeFailure(err: unknown): string {
  if (OciError.is(err)) return `${err.status} ${err.code}: ${err.message}`.slice(0, 1024);
  if (err instanceof PrefetchFailure) return err.message.slice(0, 1024);
  return `the fill failed: ${(err as Error)?.message ?? String(err)}`.slice(0, 1024);
}

/**
 * Pre-warming a registry's cache (issue 15): `create()` records the images and queues one PREFETCH_IMAGE
 * job per image; the job drives the pull path exactly as a client would (ProxyManifestStore.manifest for the
 * manifest or index and the children of the wanted platforms, ProxyBlobStore.blob for every config and
 * layer, bodies drained), so the cache is filled as by a pull: verified, one upstream download per blob,
 * coalesced with concurrent pulls of the same blobs. Progress is kept on the rows (any replica reports
 * it); a restart re-queues what was not finished.
 */
@Injectable()
export class PrefetchService implements OnModuleInit, OnApplicationBootstrap {
  private readonly logger = new Logger(PrefetchService.name);

  constructor(
    @InjectRepository(Prefetch) private readonly prefetches: Repository<Prefetch>,
    @InjectRepository(PrefetchImage) private readonly images: Repository<PrefetchImage>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registries: RegistriesService,
    private readonly targets: UpstreamsService,
    private readonly pulls: ProxyManifestStore,
    private readonly blobStore: ProxyBlobStore,
    @Inject(QUEUE_DRIVER) private readonly queue: QueueDriver,
    @Inject(limitsConfig.KEY) private readonly limits: LimitsConfig,
  ) {}

  onModuleInit(): void {
    this.queue.registerHandler<PrefetchJobData>(JobName.PREFETCH_IMAGE, (job) => this.run(job));
  }

  /** Images whose job was lost with a process (the in-process queue) are queued again; the job id dedupes. */
  async onApplicationBootstrap(): Promise<void> {
    const unfinished = await this.images.find({
      select: { id: true },
      where: { status: In([PrefetchImageStatus.PENDING, PrefetchImageStatus.RUNNING]) },
      order: { id: 'ASC' },
      take: 10_000,
    });
    for (const { id } of unfinished) await this.enqueue(id);
    if (unfinished.length) this.logger.log(`re-queued ${unfinished.length} unfinished prefetch image(s)`);
  }

  async create(actor: Actor, registryId: number, references: ImageReference[]): Promise<PrefetchWithImages> {
    const registry = await this.registries.findAccessible(actor, registryId, GroupPermission.WRITE);
    const created = await this.dataSource.transaction(async (manager) => {
      const prefetch = await manager.save(manager.create(Prefetch, { registryId: registry.id }));
      const images = await manager.save(
        references.map((ref, i) =>
          manager.create(PrefetchImage, {
            prefetchId: prefetch.id,
            position: i + 1,
            repository: ref.repository,
            reference: ref.reference,
            platforms: ref.platforms ?? null,
            status: PrefetchImageStatus.PENDING,
          }),
        ),
      );
      return { prefetch, images };
    });
    for (const image of created.images) await this.enqueue(image.id);
    return created;
  }

  async get(actor: Actor, registryId: number, prefetchId: number): Promise<PrefetchWithImages> {
    const registry = await this.registries.findAccessible(actor, registryId, GroupPermission.WRITE);
    const prefetch = await this.prefetches.findOneBy({ id: prefetchId, registryId: registry.id });
    if (!prefetch) throw prefetchNotFound();
    const images = await this.images.find({ where: { prefetchId: prefetch.id }, order: { position: 'ASC' } });
    return { prefetch, images };
  }

  private async enqueue(imageId: number): Promise<void> {
    await this.queue.add<PrefetchJobData>(JobName.PREFETCH_IMAGE, { imageId }, { jobId: jobIdOf(imageId), attempts: PREFETCH_ATTEMPTS, backoffMs: 2000 });
  }

  // ---------------------------------------------------------------- the job

  async run(job: QueuedJob<PrefetchJobData>): Promise<void> {
    const image = await this.images.findOne({ where: { id: job.data.imageId }, relations: { prefetch: true } });
    if (!image || image.status === PrefetchImageStatus.DONE || image.status === PrefetchImageStatus.FAILED) return;
    await this.images.update(image.id, { status: PrefetchImageStatus.RUNNING });
    const progress: Progress = { manifests: 0, blobs: 0, bytes: 0 };
    try {
      const target = await this.targets.pullTargetOf(image.prefetch!.registryId);
      if (!target) throw new PrefetchFailure('the registry no longer exists');
      await this.fill(target, image, progress, job.signal);
      await this.images.update(image.id, { status: PrefetchImageStatus.DONE, reason: null, ...progress });
      this.logger.log(
        `prefetched ${image.repository}:${image.reference} into registry ${target.registryId}: ${progress.manifests} manifest(s), ${progress.blobs} blob(s)`,
      );
    } catch (err) {
      const reason = describeFailure(err);
      const retry = OciError.is(err, OciErrorCode.UNAVAILABLE) && job.attempt < PREFETCH_ATTEMPTS && !job.signal.aborted;
      await this.images.update(image.id, { status: retry ? PrefetchImageStatus.PENDING : PrefetchImageStatus.FAILED, reason, ...progress });
      this.logger.warn(`prefetch of ${image.repository}:${image.reference} ${retry ? 'will be retried' : 'failed'}: ${reason}`);
      if (retry) throw err;
    }
  }

  /** The manifest (or index and its wanted children), then every blob they name, through the pull path. */
  private async fill(target: PullTarget, image: PrefetchImage, progress: Progress, signal: AbortSignal): Promise<void> {
    const name = RepositoryName.parse(image.repository);
    const top = parseManifestDescriptors(await this.manifest(target, name, ManifestReference.parse(image.reference)));
    await this.advance(image, progress, { manifests: 1 });
    const images = top.isIndex ? [] : [top];
    if (top.isIndex) {
      for (const child of this.wantedChildren(top.manifests, image.platforms)) {
        signal.throwIfAborted();
        const parsed = parseManifestDescriptors(await this.manifest(target, name, ManifestReference.digest(child.digest)));
        await this.advance(image, progress, { manifests: 1 });
        if (!parsed.isIndex) images.push(parsed);
      }
    }
    const blobs = new Map<string, Descriptor>();
    for (const manifest of images) {
      // foreign layers (`urls`) are fetched by clients from those URLs, never from a registry
      for (const blob of [manifest.config, ...manifest.layers]) if (blob && !blob.urls?.length) blobs.set(blob.digest.toString(), blob);
    }
    for (const blob of blobs.values()) {
      signal.throwIfAborted();
      await this.blob(target, name, blob.digest);
      await this.advance(image, progress, { blobs: 1, bytes: blob.size });
    }
  }

  private wantedChildren(children: Descriptor[], platforms: string[] | null): Descriptor[] {
    if (!platforms?.length) return children;
    const missing = platforms.filter((p) => !children.some((c) => platformMatches(c.platform, p)));
    if (missing.length) {
      const offered = children.map((c) => (c.platform ? platformString(c.platform) : 'unknown')).join(', ');
      throw new PrefetchFailure(`the index has no manifest for ${missing.join(', ')} (it has ${offered})`);
    }
    return children.filter((c) => platforms.some((p) => platformMatches(c.platform, p)));
  }

  private async manifest(target: PullTarget, name: RepositoryName, reference: ManifestReference): Promise<Buffer> {
    const res = await this.pulls.manifest(target, { kind: 'manifest', name, reference }, 'GET');
    return bodyBytes(res, this.limits.maxManifestSize);
  }

  /** The blob as a pull would get it, every byte read (a fill commits once its bytes are verified). */
  private async blob(target: PullTarget, name: RepositoryName, digest: Digest): Promise<void> {
    const res = await this.blobStore.blob(target, { kind: 'blob', name, digest }, 'GET');
    if (!res.body || Buffer.isBuffer(res.body)) return;
    await pipeline(res.body as Readable, new Writable({ write: (_chunk, _encoding, done) => done() }));
  }

  private async advance(image: PrefetchImage, progress: Progress, step: Partial<Progress>): Promise<void> {
    progress.manifests += step.manifests ?? 0;
    progress.blobs += step.blobs ?? 0;
    progress.bytes += step.bytes ?? 0;
    await this.images.update(image.id, { ...progress });
  }
}

async function bodyBytes(res: PullResponse, maxBytes: number): Promise<Buffer> {
  if (!res.body) return Buffer.alloc(0);
  if (Buffer.isBuffer(res.body)) return res.body;
  const declared = Number(res.headers['content-length']);
  return readManifestBody(res.body as Readable, maxBytes, Number.isFinite(declared) ? declared : undefined);
}
