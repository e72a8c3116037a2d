/**
 * Deterministic container images for e2e tests, generated on the fly and pushed straight to a registry
 * over the distribution HTTP API (no docker, no skopeo needed to seed an upstream).
 *
 * Every layer is a valid gzip-compressed tar archive (so podman can unpack it) holding a small text file
 * and a file of pseudo-random, incompressible bytes drawn from AES-128-CTR keyed by the seed. The gzip is
 * written here with "stored" deflate blocks, so the bytes (and digests) depend only on this code and the
 * seed, never on the zlib version; image configs carry `rootfs.diff_ids` (sha256 of the uncompressed tar).
 * Layers are streamed in 1 MiB chunks: nothing ever holds a large layer in memory.
 *
 *     const image = await buildOciImage({ layerSize: 128 * 1024 * 1024 });
 *     const pushed = await pushImage(upstream.url, 'library/big', 'latest', image, upstream.credentials);
 */
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { request } from 'undici';
import type { RegistryCredentials } from './token-server.js';

export const MEDIA_TYPES = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

const MiB = 1024 * 1024;
const CHUNK = MiB;
/** 2024-01-01T00:00:00Z, the mtime of every file and the `created` of every image. */
const FIXED_EPOCH_SECONDS = 1704067200;
const FIXED_CREATED = '2024-01-01T00:00:00Z';

export interface ImagePlatform {
  architecture: string;
  os: string;
  variant?: string;
}

/** A blob the fixture can regenerate at will. */
export interface FixtureBlob {
  digest: string;
  size: number;
  mediaType: string;
  /** For layers: sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId?: string;
  /** A fresh stream of the blob's bytes (regenerated, never buffered whole). */
  open(): Readable;
}

export interface ImageManifestFixture {
  kind: 'manifest';
  mediaType: string;
  /** The manifest's exact bytes. */
  manifest: Buffer;
  digest: string;
  platform: ImagePlatform;
  config: FixtureBlob;
  layers: FixtureBlob[];
}

export interface ImageIndexFixture {
  kind: 'index';
  mediaType: string;
  manifest: Buffer;
  digest: string;
  children: ImageManifestFixture[];
}

export type ImageFixture = ImageManifestFixture | ImageIndexFixture;

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Digest and size of a stream's bytes (for comparing what a client or the proxy returned). */
export async function streamDigest(stream: NodeJS.ReadableStream | AsyncIterable<Uint8Array>): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Uint8Array | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    hash.update(buf);
    size += buf.length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

export function fileDigest(path: string): Promise<{ digest: string; size: number }> {
  return streamDigest(createReadStream(path));
}

// ---------------------------------------------------------------------------------------------------------
// Deterministic bytes, tar and gzip

/** Pseudo-random bytes from AES-128-CTR over zeros, keyed by the seed: fast, incompressible, reproducible. */
function* seededRandomChunks(seed: string, total: number): Generator<Buffer> {
  const keyMaterial = createHash('sha256').update(`image-fixture-bytes:${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', keyMaterial.subarray(0, 16), keyMaterial.subarray(16, 32));
  const zeros = Buffer.alloc(Math.min(CHUNK, Math.max(total, 1)));
  let remaining = total;
  while (remaining > 0) {
    const n = Math.min(remaining, zeros.length);
    yield cipher.update(zeros.subarray(0, n));
    remaining -= n;
  }
}

function writeOctal(header: Buffer, offset: number, width: number, value: number): void {
  header.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'ascii');
}

/** A POSIX ustar header for a regular file ('0') or a directory ('5'). */
function tarHeader(name: string, size: number, type: '0' | '5'): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  writeOctal(header, 100, 8, type === '5' ? 0o755 : 0o644);
  writeOctal(header, 108, 8, 0);
  writeOctal(header, 116, 8, 0);
  writeOctal(header, 124, 12, size);
  writeOctal(header, 136, 12, FIXED_EPOCH_SECONDS);
  header.write('        ', 148, 8, 'ascii');
  header.write(type, 156, 1, 'ascii');
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  header.write('root', 265, 32, 'ascii');
  header.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return header;
}

function tarPadding(size: number): Buffer | undefined {
  const rest = size % 512;
  return rest === 0 ? undefined : Buffer.alloc(512 - rest);
}

interface LayerSpec {
  /** Unique per layer; names the files inside and seeds the random bytes. */
  label: string;
  /** Size of the pseudo-random file in the layer. */
  randomBytes: number;
}

/** The uncompressed tar: `fixture/`, `fixture/<label>.txt`, `fixture/<label>.bin` (random bytes). */
function* layerTarChunks(spec: LayerSpec): Generator<Buffer> {
  const text = Buffer.from(`image fixture layer ${spec.label}\n`);
  yield tarHeader('fixture/', 0, '5');
  yield tarHeader(`fixture/${spec.label}.txt`, text.length, '0');
  yield text;
  const textPad = tarPadding(text.length);
  if (textPad) yield textPad;
  yield tarHeader(`fixture/${spec.label}.bin`, spec.randomBytes, '0');
  yield* seededRandomChunks(spec.label, spec.randomBytes);
  const binPad = tarPadding(spec.randomBytes);
  if (binPad) yield binPad;
  yield Buffer.alloc(1024);
}

/** gzip (RFC 1952) of the input using stored deflate blocks: valid for every gunzip, byte-stable forever. */
function* storedGzip(input: Iterable<Buffer>, onUncompressed?: (chunk: Buffer) => void): Generator<Buffer> {
  yield Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff]);
  let crc = 0;
  let length = 0;
  for (const chunk of input) {
    if (chunk.length === 0) continue;
    onUncompressed?.(chunk);
    crc = crc32(chunk, crc);
    length += chunk.length;
    const blocks = Math.ceil(chunk.length / 65535);
    const out = Buffer.allocUnsafe(chunk.length + blocks * 5);
    let o = 0;
    for (let i = 0; i < chunk.length; i += 65535) {
      const n = Math.min(65535, chunk.length - i);
      out[o] = 0x00;
      out.writeUInt16LE(n, o + 1);
      out.writeUInt16LE(~n & 0xffff, o + 3);
      chunk.copy(out, o + 5, i, i + n);
      o += 5 + n;
    }
    yield out;
  }
  const trailer = Buffer.alloc(13);
  trailer.set([0x01, 0x00, 0x00, 0xff, 0xff], 0);
  trailer.writeUInt32LE(crc >>> 0, 5);
  trailer.writeUInt32LE(length % 2 ** 32, 9);
  yield trailer;
}

const layerCache = new Map<string, { digest: string; size: number; diffId: string }>();

/** Digests a layer by generating it once (yielding to the event loop every few MiB). */
async function describeLayer(spec: LayerSpec): Promise<{ digest: string; size: number; diffId: string }> {
  const key = `${spec.label}:${spec.randomBytes}`;
  const cached = layerCache.get(key);
  if (cached) return cached;
  const compressed = createHash('sha256');
  const uncompressed = createHash('sha256');
  let size = 0;
  let sinceYield = 0;
  for (const chunk of storedGzip(layerTarChunks(spec), (raw) => uncompressed.update(raw))) {
    compressed.update(chunk);
    size += chunk.length;
    sinceYield += chunk.length;
    if (sinceYield >= 8 * MiB) {
      sinceYield = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  const described = { digest: `sha256:${compressed.digest('hex')}`, size, diffId: `sha256:${uncompressed.digest('hex')}` };
  layerCache.set(key, described);
  return described;
}

function bufferBlob(data: Buffer, mediaType: string): FixtureBlob {
  return { digest: sha256Digest(data), size: data.length, mediaType, open: () => Readable.from([data], { objectMode: false }) };
}

function safeLabel(value: string): string {
  return value
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .slice(0, 60);
}

// ---------------------------------------------------------------------------------------------------------
// Builders

export interface BuildImageOptions {
  /** Same seed, same options -> same bytes and digests, on every run. */
  seed?: string;
  /** `docker` (schema2) or `oci` manifest and media types; default `oci`. */
  format?: 'docker' | 'oci';
  /** Random-file size of each layer, in order (each layer adds ~1.6 KiB of tar/gzip framing). */
  layerSizes?: number[];
  platform?: ImagePlatform;
}

/** One image manifest with its config and layers. */
export async function buildImage(options: BuildImageOptions = {}): Promise<ImageManifestFixture> {
  const seed = options.seed ?? 'image';
  const format = options.format ?? 'oci';
  const platform = options.platform ?? { architecture: 'amd64', os: 'linux' };
  const layerSizes = options.layerSizes ?? [32 * 1024];
  const layerMediaType = format === 'docker' ? MEDIA_TYPES.dockerLayer : MEDIA_TYPES.ociLayer;

  const layers: FixtureBlob[] = [];
  for (const [index, randomBytes] of layerSizes.entries()) {
    const spec: LayerSpec = { label: safeLabel(`${seed}-${platform.architecture}-layer${index}`), randomBytes };
    const described = await describeLayer(spec);
    layers.push({
      ...described,
      mediaType: layerMediaType,
      open: () => Readable.from(storedGzip(layerTarChunks(spec)), { objectMode: false }),
    });
  }

  const configJson = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created: FIXED_CREATED,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `FIXTURE_SEED=${seed}`],
      Cmd: ['/bin/sh'],
      WorkingDir: '/fixture',
      Labels: { 'org.example.fixture': seed },
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created: FIXED_CREATED, created_by: `image fixture ${seed} layer ${i}` })),
  };
  const config = bufferBlob(Buffer.from(JSON.stringify(configJson)), format === 'docker' ? MEDIA_TYPES.dockerConfig : MEDIA_TYPES.ociConfig);

  const mediaType = format === 'docker' ? MEDIA_TYPES.dockerManifest : MEDIA_TYPES.ociManifest;
  const descriptor = (b: FixtureBlob) => ({ mediaType: b.mediaType, size: b.size, digest: b.digest });
  const manifest = Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType,
        config: descriptor(config),
        layers: layers.map(descriptor),
        ...(format === 'oci' ? { annotations: { 'org.opencontainers.image.title': seed } } : {}),
      },
      null,
      3,
    ),
  );
  return { kind: 'manifest', mediaType, manifest, digest: sha256Digest(manifest), platform, config, layers };
}

/** A Docker schema2 image: docker media types, config + 2 small layers (48 KiB and 160 KiB of random data). */
export function buildDockerImage(options: Omit<BuildImageOptions, 'format'> = {}): Promise<ImageManifestFixture> {
  return buildImage({ seed: 'docker-schema2', layerSizes: [48 * 1024, 160 * 1024], ...options, format: 'docker' });
}

/** An OCI image with one small layer and one large one (`layerSize`, default 100 MiB of incompressible bytes). */
export function buildOciImage(options: Omit<BuildImageOptions, 'format' | 'layerSizes'> & { layerSize?: number } = {}): Promise<ImageManifestFixture> {
  const { layerSize, ...rest } = options;
  return buildImage({ seed: 'oci-large', ...rest, format: 'oci', layerSizes: [8 * 1024, layerSize ?? 100 * MiB] });
}

export interface BuildIndexOptions {
  seed?: string;
  /** `oci` image index (default) or `docker` manifest list. */
  format?: 'docker' | 'oci';
  /** Default: linux/amd64 and linux/arm64/v8. */
  platforms?: ImagePlatform[];
  /** Layer sizes of every child image; default one 24 KiB and one 40 KiB layer. */
  layerSizes?: number[];
}

/** A multi-platform index whose children are distinct images (own configs and layers). */
export async function buildImageIndex(options: BuildIndexOptions = {}): Promise<ImageIndexFixture> {
  const seed = options.seed ?? 'multi-arch';
  const format = options.format ?? 'oci';
  const platforms = options.platforms ?? [
    { architecture: 'amd64', os: 'linux' },
    { architecture: 'arm64', os: 'linux', variant: 'v8' },
  ];
  const children: ImageManifestFixture[] = [];
  for (const platform of platforms) {
    children.push(await buildImage({ seed, format, platform, layerSizes: options.layerSizes ?? [24 * 1024, 40 * 1024] }));
  }
  const mediaType = format === 'docker' ? MEDIA_TYPES.dockerManifestList : MEDIA_TYPES.ociIndex;
  const manifest = Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType,
        manifests: children.map((c) => ({ mediaType: c.mediaType, size: c.manifest.length, digest: c.digest, platform: c.platform })),
      },
      null,
      3,
    ),
  );
  return { kind: 'index', mediaType, manifest, digest: sha256Digest(manifest), children };
}

/** Every distinct blob (configs and layers) an image references, children included. */
export function imageBlobs(image: ImageFixture): FixtureBlob[] {
  const all = image.kind === 'index' ? image.children.flatMap((c) => [c.config, ...c.layers]) : [image.config, ...image.layers];
  const seen = new Set<string>();
  return all.filter((b) => (seen.has(b.digest) ? false : (seen.add(b.digest), true)));
}

/** The bytes of a blob, or of a manifest (the image's own or a child's), by digest, as a fresh stream. */
export function blobBytes(image: ImageFixture, digest: string): Readable {
  const manifests = image.kind === 'index' ? [image, ...image.children] : [image];
  const manifest = manifests.find((m) => m.digest === digest);
  if (manifest) return Readable.from([manifest.manifest], { objectMode: false });
  const blob = imageBlobs(image).find((b) => b.digest === digest);
  if (!blob) throw new Error(`image ${image.digest} has no blob ${digest}`);
  return blob.open();
}

// ---------------------------------------------------------------------------------------------------------
// Pushing

export interface PushedBlob {
  digest: string;
  size: number;
  mediaType: string;
}

export interface PushedManifest {
  digest: string;
  mediaType: string;
  manifestBytes: Buffer;
  platform: ImagePlatform;
  blobs: PushedBlob[];
}

export interface PushedImage {
  name: string;
  tag: string;
  manifestDigest: string;
  manifestBytes: Buffer;
  mediaType: string;
  /** Every blob pushed (configs and layers; for an index, those of all children). */
  blobs: PushedBlob[];
  /** For an index: the child manifests, pushed by digest before the index. */
  children: PushedManifest[];
}

function parseChallengeParams(header: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const m of header.matchAll(/(\w+)="([^"]*)"/g)) params[m[1].toLowerCase()] = m[2];
  return params;
}

/** A minimal registry push client: Basic or Bearer (token-server) auth, monolithic blob uploads. */
class RegistryPushSession {
  private authorization?: string;

  constructor(
    private readonly baseUrl: string,
    private readonly name: string,
    private readonly credentials?: RegistryCredentials,
  ) {}

  private async authenticate(challenge: string): Promise<void> {
    const basic = this.credentials ? `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}` : undefined;
    if (/^basic/i.test(challenge)) {
      if (!basic) throw new Error(`registry ${this.baseUrl} wants Basic credentials and none were given`);
      this.authorization = basic;
      return;
    }
    if (!/^bearer/i.test(challenge)) throw new Error(`unsupported registry challenge: ${challenge}`);
    const params = parseChallengeParams(challenge);
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.append('scope', `repository:${this.name}:pull,push`);
    const res = await request(tokenUrl, { method: 'GET', headers: basic ? { authorization: basic } : {} });
    const body = (await res.body.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (res.statusCode !== 200 || !token) throw new Error(`token server ${tokenUrl.origin} answered ${res.statusCode}`);
    this.authorization = `Bearer ${token}`;
  }

  async send(
    method: 'GET' | 'HEAD' | 'POST' | 'PUT',
    target: string | URL,
    expected: number[],
    headers: Record<string, string> = {},
    body?: () => Readable | Buffer,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
    const url = new URL(target, this.baseUrl);
    for (let attempt = 0; ; attempt++) {
      const res = await request(url, {
        method,
        headers: { ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) },
        body: body?.(),
      });
      const text = await res.body.text();
      const challenge = res.headers['www-authenticate'];
      if (res.statusCode === 401 && attempt === 0 && typeof challenge === 'string') {
        await this.authenticate(challenge);
        continue;
      }
      if (!expected.includes(res.statusCode)) {
        throw new Error(`${method} ${url.pathname} -> ${res.statusCode} (expected ${expected.join('/')}): ${text.slice(0, 500)}`);
      }
      return { status: res.statusCode, headers: res.headers };
    }
  }

  async pushBlob(blob: FixtureBlob): Promise<void> {
    const exists = await this.send('HEAD', `/v2/${this.name}/blobs/${blob.digest}`, [200, 404]);
    if (exists.status === 200) return;
    const started = await this.send('POST', `/v2/${this.name}/blobs/uploads/`, [202], { 'content-length': '0' });
    const location = started.headers.location;
    if (typeof location !== 'string') throw new Error('upload start returned no Location');
    const uploadUrl = new URL(location, this.baseUrl);
    uploadUrl.searchParams.set('digest', blob.digest);
    await this.send('PUT', uploadUrl, [201], { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) }, () => blob.open());
  }

  async pushManifest(reference: string, manifest: Buffer, mediaType: string, expectedDigest: string): Promise<void> {
    const res = await this.send('PUT', `/v2/${this.name}/manifests/${reference}`, [201], { 'content-type': mediaType }, () => manifest);
    const digest = res.headers['docker-content-digest'];
    if (digest !== expectedDigest) throw new Error(`registry computed manifest digest ${String(digest)}, expected ${expectedDigest}`);
  }
}

const pushedBlob = (b: FixtureBlob): PushedBlob => ({ digest: b.digest, size: b.size, mediaType: b.mediaType });

/**
 * Pushes an image (blobs, then child manifests by digest, then the manifest under `tag`) to the registry
 * at `registryUrl` (`http://127.0.0.1:port`). `auth` answers Basic or Bearer challenges.
 */
export async function pushImage(registryUrl: string, name: string, tag: string, image: ImageFixture, auth?: RegistryCredentials): Promise<PushedImage> {
  const session = new RegistryPushSession(registryUrl.replace(/\/+$/, ''), name, auth);
  const manifests = image.kind === 'index' ? image.children : [image];
  for (const m of manifests) {
    for (const blob of [m.config, ...m.layers]) await session.pushBlob(blob);
  }
  if (image.kind === 'index') {
    for (const child of image.children) await session.pushManifest(child.digest, child.manifest, child.mediaType, child.digest);
  }
  await session.pushManifest(tag, image.manifest, image.mediaType, image.digest);
  return {
    name,
    tag,
    manifestDigest: image.digest,
    manifestBytes: image.manifest,
    mediaType: image.mediaType,
    blobs: imageBlobs(image).map(pushedBlob),
    children:
      image.kind === 'index'
        ? image.children.map((c) => ({
            digest: c.digest,
            mediaType: c.mediaType,
            manifestBytes: c.manifest,
            platform: c.platform,
            blobs: [c.config, ...c.layers].map(pushedBlob),
          }))
        : [],
  };
}
