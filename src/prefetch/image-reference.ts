import { ManifestReference, OciError, RepositoryName } from '../oci/index.js';

/** An image to prefetch: a repository of the registry, a tag or digest, and optionally the platforms of an index. */
export interface ImageReference {
  repository: string;
  /** A tag or `sha256:<hex>`. */
  reference: string;
  /** `os/arch[/variant]`; undefined: every platform of an index. */
  platforms?: string[];
}

const PLATFORM = /^[a-z0-9._-]+\/[a-z0-9._-]+(\/[a-z0-9._-]+)?$/;

/**
 * `library/alpine:3.20`, `library/alpine@sha256:<hex>`, `library/alpine:3.20@sha256:<hex>` (the digest
 * wins) or `library/alpine` (`latest`), relative to the registry (no host). Throws a message for the
 * caller's 400 when the reference or a platform is malformed.
 */
export function parseImageReference(value: string, platforms?: string[]): ImageReference {
  let repository = value;
  let reference = 'latest';
  const at = value.indexOf('@');
  if (at >= 0) {
    repository = value.slice(0, at);
    reference = value.slice(at + 1);
    const colon = repository.lastIndexOf(':');
    if (colon > repository.lastIndexOf('/')) repository = repository.slice(0, colon);
  } else {
    const colon = value.lastIndexOf(':');
    if (colon > value.lastIndexOf('/')) {
      repository = value.slice(0, colon);
      reference = value.slice(colon + 1);
    }
  }
  try {
    RepositoryName.parse(repository);
    ManifestReference.parse(reference);
  } catch (err) {
    if (OciError.is(err)) throw new Error(`"${value.slice(0, 300)}" is not an image reference (${err.message})`, { cause: err });
    throw err;
  }
  if (platforms !== undefined) {
    const bad = platforms.find((p) => !PLATFORM.test(p));
    if (bad !== undefined) throw new Error(`"${bad.slice(0, 100)}" is not a platform (os/arch or os/arch/variant, e.g. linux/arm64/v8)`);
  }
  return { repository, reference, ...(platforms?.length ? { platforms: [...new Set(platforms)] } : {}) };
}
