/**
 * Manifest and blob media types (Docker image manifest v2 schema 2, OCI image spec 1.1), detection of
 * a manifest's type from its JSON for upstreams that send a wrong Content-Type, and extraction of the
 * descriptors a manifest or index points to.
 */
import { Digest } from './digest.js';
import { OciError, OciErrorCode } from './oci-error.js';

export const MediaType = {
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_MANIFEST_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  /** Legacy Docker schema 1, recognised only to be refused (Docker Hub no longer serves it). */
  DOCKER_MANIFEST_V1: 'application/vnd.docker.distribution.manifest.v1+json',
  DOCKER_MANIFEST_V1_SIGNED: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DOCKER_FOREIGN_LAYER: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_LAYER_ZSTD: 'application/vnd.oci.image.layer.v1.tar+zstd',
  /** Content-Type of blobs, whose type the registry does not know. */
  OCTET_STREAM: 'application/octet-stream',
} as const;

/** Manifests this registry serves: image manifests first, then indexes. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [MediaType.DOCKER_MANIFEST, MediaType.DOCKER_MANIFEST_LIST, MediaType.OCI_MANIFEST, MediaType.OCI_INDEX];

const INDEX_MEDIA_TYPES: readonly string[] = [MediaType.DOCKER_MANIFEST_LIST, MediaType.OCI_INDEX];

/** The Accept header sent upstream when the client sent none. */
export const DEFAULT_MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');

/** Largest manifest accepted (the OCI spec's recommended 4 MiB). */
export const MANIFEST_MAX_SIZE = 4 * 1024 * 1024;

/** `Application/JSON; charset=utf-8` -> `application/json`: parameters dropped, lower-cased. */
export function normalizeMediaType(contentType: string | undefined | null): string {
  if (typeof contentType !== 'string') return '';
  const semicolon = contentType.indexOf(';');
  return (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
}

/** True for the image manifest and index types this registry serves. */
export function isManifestMediaType(contentType: string | undefined | null): boolean {
  return MANIFEST_MEDIA_TYPES.includes(normalizeMediaType(contentType));
}

/** True for multi-platform indexes (OCI index, Docker manifest list). */
export function isIndexMediaType(contentType: string | undefined | null): boolean {
  return INDEX_MEDIA_TYPES.includes(normalizeMediaType(contentType));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A manifest's media type from its parsed JSON: its `mediaType` field when that is a manifest type,
 * otherwise from its shape (`schemaVersion` 1 = Docker schema 1, `manifests[]` = OCI index,
 * `config` + `layers[]` = OCI manifest; Docker's own types always carry `mediaType`).
 * Undefined when the JSON is not recognisably a manifest.
 */
export function detectManifestMediaType(json: unknown): string | undefined {
  if (!isObject(json)) return undefined;
  const declared = normalizeMediaType(typeof json.mediaType === 'string' ? json.mediaType : undefined);
  if (MANIFEST_MEDIA_TYPES.includes(declared)) return declared;
  if (json.schemaVersion === 1) {
    return Array.isArray(json.signatures) ? MediaType.DOCKER_MANIFEST_V1_SIGNED : MediaType.DOCKER_MANIFEST_V1;
  }
  if (json.schemaVersion !== 2) return undefined;
  if (Array.isArray(json.manifests)) return MediaType.OCI_INDEX;
  if (isObject(json.config) && Array.isArray(json.layers)) return MediaType.OCI_MANIFEST;
  return undefined;
}

/**
 * The Content-Type to store and serve for manifest bytes: the upstream's Content-Type when it is a
 * manifest type (kept exactly, parameters dropped), otherwise the type detected from the JSON.
 * Undefined when neither tells.
 */
export function resolveManifestMediaType(contentType: string | undefined | null, bytes: Uint8Array): string | undefined {
  if (isManifestMediaType(contentType)) return normalizeMediaType(contentType);
  try {
    return detectManifestMediaType(JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')));
  } catch {
    return undefined;
  }
}

/** The platform an index entry is for. */
export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
}

/** A content descriptor: what a manifest says about a child blob or manifest. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  platform?: Platform;
  urls?: string[];
  annotations?: Record<string, string>;
}

/** The descriptors a manifest or index points to. */
export interface ManifestDescriptors {
  /** The manifest's own media type (`mediaType` field or detected shape). */
  mediaType: string;
  /** True for an index / manifest list. */
  isIndex: boolean;
  /** An index's child manifests. */
  manifests: Descriptor[];
  /** An image manifest's config blob. */
  config?: Descriptor;
  /** An image manifest's layers. */
  layers: Descriptor[];
  /** The manifest this one refers to (OCI 1.1 referrers). */
  subject?: Descriptor;
  /** Every child in document order: manifests, config, layers, subject. */
  all: Descriptor[];
}

export interface ParseManifestOptions {
  /** Largest accepted size in bytes (default MANIFEST_MAX_SIZE). */
  maxSize?: number;
}

function manifestInvalid(message: string, detail?: unknown): OciError {
  return new OciError(OciErrorCode.MANIFEST_INVALID, message, detail === undefined ? {} : { detail });
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw manifestInvalid(`${where} is not a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw manifestInvalid(`${where}.mediaType is missing`);
  const parsedDigest = typeof digest === 'string' ? Digest.tryParse(digest) : undefined;
  if (!parsedDigest) {
    throw manifestInvalid(`${where}.digest is not a valid digest`, { digest: typeof digest === 'string' ? digest.slice(0, 200) : null });
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw manifestInvalid(`${where}.size is not a non-negative integer`);
  }
  const descriptor: Descriptor = { mediaType, digest: parsedDigest, size };
  if (typeof value.artifactType === 'string') descriptor.artifactType = value.artifactType;
  if (isObject(value.platform) && typeof value.platform.architecture === 'string' && typeof value.platform.os === 'string') {
    const { architecture, os, variant } = value.platform;
    const platform: Platform = { architecture, os };
    if (typeof variant === 'string') platform.variant = variant;
    if (typeof value.platform['os.version'] === 'string') platform['os.version'] = value.platform['os.version'];
    descriptor.platform = platform;
  }
  if (Array.isArray(value.urls) && value.urls.every((u) => typeof u === 'string')) descriptor.urls = value.urls as string[];
  if (isObject(value.annotations) && Object.values(value.annotations).every((a) => typeof a === 'string')) {
    descriptor.annotations = value.annotations as Record<string, string>;
  }
  return descriptor;
}

function parseDescriptorList(value: unknown, field: string): Descriptor[] {
  if (!Array.isArray(value)) throw manifestInvalid(`${field} is not an array`);
  return value.map((item, i) => parseDescriptor(item, `${field}[${i}]`));
}

/**
 * Parse manifest bytes and return the descriptors they reference. MANIFEST_INVALID when the bytes are
 * larger than `maxSize`, not a JSON object, a Docker schema 1 manifest, or have malformed descriptors.
 */
export function parseManifestDescriptors(bytes: Uint8Array, options: ParseManifestOptions = {}): ManifestDescriptors {
  const maxSize = options.maxSize ?? MANIFEST_MAX_SIZE;
  if (bytes.byteLength > maxSize) {
    throw manifestInvalid(`manifest is larger than ${maxSize} bytes`, { size: bytes.byteLength, max: maxSize });
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw manifestInvalid('manifest is not valid JSON');
  }
  if (!isObject(json)) throw manifestInvalid('manifest is not a JSON object');
  if (json.schemaVersion === 1) throw manifestInvalid('Docker schema 1 manifests are not supported');
  if (json.schemaVersion !== 2) throw manifestInvalid('manifest schemaVersion must be 2');
  const mediaType = detectManifestMediaType(json);
  if (!mediaType) throw manifestInvalid('not an image manifest or index');

  const isIndex = isIndexMediaType(mediaType);
  const manifests = isIndex ? parseDescriptorList(json.manifests, 'manifests') : [];
  const config = isIndex ? undefined : parseDescriptor(json.config, 'config');
  const layers = isIndex ? [] : parseDescriptorList(json.layers ?? [], 'layers');
  const subject = json.subject === undefined ? undefined : parseDescriptor(json.subject, 'subject');
  const all = [...manifests, ...(config ? [config] : []), ...layers, ...(subject ? [subject] : [])];
  return { mediaType, isIndex, manifests, config, layers, subject, all };
}
