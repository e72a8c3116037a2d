/**
 * The `<reference>` of a manifest request: a tag (`latest`, `3.20`) or a digest (`sha256:...`).
 * Tag grammar (distribution spec): `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. A tag can never contain `:`,
 * so anything with a `:` is read as a digest.
 */
import { Digest } from './digest.js';
import { OciError, OciErrorCode } from './oci-error.js';

export const TAG_MAX_LENGTH = 128;

const TAG_PATTERN = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

export interface TagReference {
  readonly kind: 'tag';
  readonly tag: string;
}

export interface DigestReference {
  readonly kind: 'digest';
  readonly digest: Digest;
}

/** A manifest addressed by tag (mutable, revalidated) or by digest (immutable, local first). */
export type ManifestReference = TagReference | DigestReference;

export function isValidTag(value: string): boolean {
  return typeof value === 'string' && TAG_PATTERN.test(value);
}

export const ManifestReference = {
  /** Parse a reference: a bad tag is TAG_INVALID, a bad digest (anything with `:`) DIGEST_INVALID. */
  parse(value: string): ManifestReference {
    if (typeof value === 'string' && value.includes(':')) return { kind: 'digest', digest: Digest.parse(value) };
    return ManifestReference.tag(value);
  },

  /** A tag reference; TAG_INVALID when `tag` is outside the grammar. */
  tag(tag: string): TagReference {
    if (!isValidTag(tag)) {
      throw new OciError(OciErrorCode.TAG_INVALID, 'invalid tag', {
        detail: { tag: typeof tag === 'string' ? tag.slice(0, TAG_MAX_LENGTH + 1) : undefined },
      });
    }
    return { kind: 'tag', tag };
  },

  /** A digest reference from a Digest or its string form. */
  digest(digest: Digest | string): DigestReference {
    return { kind: 'digest', digest: typeof digest === 'string' ? Digest.parse(digest) : digest };
  },

  /** The wire form: the tag itself or `sha256:<hex>`. */
  toString(reference: ManifestReference): string {
    return reference.kind === 'tag' ? reference.tag : reference.digest.toString();
  },

  equals(a: ManifestReference, b: ManifestReference): boolean {
    if (a.kind === 'tag') return b.kind === 'tag' && a.tag === b.tag;
    return b.kind === 'digest' && a.digest.equals(b.digest);
  },
} as const;
