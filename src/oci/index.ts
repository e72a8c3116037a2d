/**
 * The OCI / Docker distribution domain: digests, names, references, pull paths, media types,
 * error codes and byte ranges. Pure code: no Nest, no I/O beyond node:stream hashing.
 */
export { Digest, DigestVerifier, digestStream, SUPPORTED_DIGEST_ALGORITHM } from './digest.js';
export type { DigestAlgorithm, DigestVerifierOptions } from './digest.js';
export {
  DEFAULT_MANIFEST_ACCEPT,
  MANIFEST_MAX_SIZE,
  MANIFEST_MEDIA_TYPES,
  MediaType,
  detectManifestMediaType,
  isIndexMediaType,
  isManifestMediaType,
  normalizeMediaType,
  parseManifestDescriptors,
  resolveManifestMediaType,
} from './media-types.js';
export type { Descriptor, ManifestDescriptors, ParseManifestOptions, Platform } from './media-types.js';
export { OCI_ERROR_MESSAGE, OCI_ERROR_STATUS, OciError, OciErrorCode } from './oci-error.js';
export type { OciErrorBody, OciErrorEntry, OciErrorOptions } from './oci-error.js';
export { contentRange, parseRange, rangeLength, unsatisfiedContentRange } from './range.js';
export type { ByteRange, RangeResult } from './range.js';
export { ManifestReference, TAG_MAX_LENGTH, isValidTag } from './reference.js';
export type { DigestReference, TagReference } from './reference.js';
export {
  REGISTRY_ID_MAX,
  parseRegistryId,
  parseRegistryPath,
  parseRegistryRoute,
  parseRelativePath,
  parseRepositoryPath,
  relativePath,
  relativePathOf,
} from './registry-path.js';
export type { BlobRequest, ManifestRequest, ReferrersRequest, RegistryRequest, RegistryRequestKind, RepositoryRequest, TagsRequest } from './registry-path.js';
export { REPOSITORY_NAME_MAX_LENGTH, RepositoryName } from './repository-name.js';
export { readManifestBody } from './manifest-body.js';
export { DOCKER_HUB_HOST, canonicalRegistryHost, registryHostOfUrl } from './registry-host.js';
