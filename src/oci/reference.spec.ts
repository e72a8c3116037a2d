import { Digest } from './digest.js';
import { OciError, OciErrorCode } from './oci-error.js';
import { ManifestReference, isValidTag } from './reference.js';

const DIGEST = 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824';

function codeOf(fn: () => unknown): OciErrorCode | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(OciError);
    return (err as OciError).code;
  }
}

describe('ManifestReference', () => {
  it.each(['latest', '3.20', 'v1.2.3-rc.1', '_private', 'A_b.C-d', 'a..b', 'x'.repeat(128), '0'])('parses tag %j', (tag) => {
    expect(ManifestReference.parse(tag)).toEqual({ kind: 'tag', tag });
    expect(isValidTag(tag)).toBe(true);
  });

  it('parses a digest', () => {
    const ref = ManifestReference.parse(DIGEST);
    expect(ref.kind).toBe('digest');
    expect(ref.kind === 'digest' && ref.digest.toString()).toBe(DIGEST);
    expect(ManifestReference.toString(ref)).toBe(DIGEST);
  });

  it.each(['', '.latest', '-latest', 'x'.repeat(129), 'lat est', 'latest/', 'lat%65st', 'caf\u00e9', '..'])('rejects tag %j with TAG_INVALID', (tag) => {
    expect(codeOf(() => ManifestReference.parse(tag))).toBe(OciErrorCode.TAG_INVALID);
    expect(isValidTag(tag)).toBe(false);
  });

  it.each(['sha256:abc', 'latest:1', DIGEST.toUpperCase(), 'md5:d41d8cd98f00b204e9800998ecf8427e', ':'])(
    'rejects digest-like %j with DIGEST_INVALID',
    (value) => {
      expect(codeOf(() => ManifestReference.parse(value))).toBe(OciErrorCode.DIGEST_INVALID);
    },
  );

  it('builds and compares references', () => {
    const byDigest = ManifestReference.digest(Digest.parse(DIGEST));
    expect(ManifestReference.equals(byDigest, ManifestReference.digest(DIGEST))).toBe(true);
    expect(ManifestReference.equals(byDigest, ManifestReference.tag('latest'))).toBe(false);
    expect(ManifestReference.equals(ManifestReference.tag('latest'), ManifestReference.tag('latest'))).toBe(true);
    expect(ManifestReference.equals(ManifestReference.tag('latest'), ManifestReference.tag('edge'))).toBe(false);
    expect(ManifestReference.toString(ManifestReference.tag('edge'))).toBe('edge');
    expect(codeOf(() => ManifestReference.tag('bad tag'))).toBe(OciErrorCode.TAG_INVALID);
  });
});
