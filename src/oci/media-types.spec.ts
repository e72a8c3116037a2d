import { Digest } from './digest.js';
import {
  DEFAULT_MANIFEST_ACCEPT,
  MANIFEST_MAX_SIZE,
  MediaType,
  detectManifestMediaType,
  isIndexMediaType,
  isManifestMediaType,
  normalizeMediaType,
  parseManifestDescriptors,
  resolveManifestMediaType,
} from './media-types.js';
import { OciError, OciErrorCode } from './oci-error.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

const OCI_IMAGE = {
  schemaVersion: 2,
  mediaType: MediaType.OCI_MANIFEST,
  config: { mediaType: MediaType.OCI_CONFIG, digest: d('1'), size: 1470 },
  layers: [
    { mediaType: MediaType.OCI_LAYER_GZIP, digest: d('2'), size: 3_623_807 },
    { mediaType: MediaType.OCI_LAYER_ZSTD, digest: d('3'), size: 10, urls: ['https://cdn.example/x'], annotations: { a: 'b' } },
  ],
  subject: { mediaType: MediaType.OCI_MANIFEST, digest: d('4'), size: 500 },
};

const DOCKER_IMAGE = {
  schemaVersion: 2,
  mediaType: MediaType.DOCKER_MANIFEST,
  config: { mediaType: MediaType.DOCKER_CONFIG, digest: d('a'), size: 7023 },
  layers: [{ mediaType: MediaType.DOCKER_LAYER, digest: d('b'), size: 32654 }],
};

const DOCKER_LIST = {
  schemaVersion: 2,
  mediaType: MediaType.DOCKER_MANIFEST_LIST,
  manifests: [
    { mediaType: MediaType.DOCKER_MANIFEST, digest: d('c'), size: 528, platform: { architecture: 'amd64', os: 'linux' } },
    { mediaType: MediaType.DOCKER_MANIFEST, digest: d('d'), size: 528, platform: { architecture: 'arm', os: 'linux', variant: 'v7' } },
  ],
};

const OCI_INDEX_NO_MEDIA_TYPE = {
  schemaVersion: 2,
  manifests: [
    {
      mediaType: MediaType.OCI_MANIFEST,
      digest: d('e'),
      size: 1000,
      platform: { architecture: 'amd64', os: 'windows', 'os.version': '10.0.17763.1' },
    },
  ],
};

const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));

function invalid(fn: () => unknown): OciError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(OciError);
    expect((err as OciError).code).toBe(OciErrorCode.MANIFEST_INVALID);
    return err as OciError;
  }
  throw new Error('expected MANIFEST_INVALID');
}

describe('media type constants and predicates', () => {
  it('accepts the four manifest types by default', () => {
    expect(DEFAULT_MANIFEST_ACCEPT.split(', ')).toEqual([
      'application/vnd.docker.distribution.manifest.v2+json',
      'application/vnd.docker.distribution.manifest.list.v2+json',
      'application/vnd.oci.image.manifest.v1+json',
      'application/vnd.oci.image.index.v1+json',
    ]);
  });

  it('recognises manifests and indexes, ignoring parameters and case', () => {
    expect(isManifestMediaType(MediaType.OCI_MANIFEST)).toBe(true);
    expect(isManifestMediaType('Application/VND.oci.image.index.v1+json; charset=utf-8')).toBe(true);
    expect(isManifestMediaType(MediaType.OCI_CONFIG)).toBe(false);
    expect(isManifestMediaType('application/json')).toBe(false);
    expect(isManifestMediaType(undefined)).toBe(false);
    expect(isManifestMediaType(MediaType.DOCKER_MANIFEST_V1_SIGNED)).toBe(false);
    expect(isIndexMediaType(MediaType.OCI_INDEX)).toBe(true);
    expect(isIndexMediaType(MediaType.DOCKER_MANIFEST_LIST)).toBe(true);
    expect(isIndexMediaType(MediaType.DOCKER_MANIFEST)).toBe(false);
    expect(normalizeMediaType(' text/plain ;q=1')).toBe('text/plain');
    expect(normalizeMediaType(null)).toBe('');
  });
});

describe('detectManifestMediaType', () => {
  it('trusts a declared manifest mediaType', () => {
    expect(detectManifestMediaType(DOCKER_IMAGE)).toBe(MediaType.DOCKER_MANIFEST);
    expect(detectManifestMediaType(DOCKER_LIST)).toBe(MediaType.DOCKER_MANIFEST_LIST);
    expect(detectManifestMediaType(OCI_IMAGE)).toBe(MediaType.OCI_MANIFEST);
  });

  it('falls back to the shape', () => {
    expect(detectManifestMediaType(OCI_INDEX_NO_MEDIA_TYPE)).toBe(MediaType.OCI_INDEX);
    const { mediaType: _ignored, ...image } = OCI_IMAGE;
    expect(detectManifestMediaType(image)).toBe(MediaType.OCI_MANIFEST);
    expect(detectManifestMediaType({ ...image, mediaType: 'application/json' })).toBe(MediaType.OCI_MANIFEST);
    expect(detectManifestMediaType({ schemaVersion: 1, fsLayers: [], signatures: [] })).toBe(MediaType.DOCKER_MANIFEST_V1_SIGNED);
    expect(detectManifestMediaType({ schemaVersion: 1, fsLayers: [] })).toBe(MediaType.DOCKER_MANIFEST_V1);
  });

  it.each([null, [], 'x', 42, {}, { schemaVersion: 2 }, { schemaVersion: 3, manifests: [] }, { schemaVersion: 2, layers: [] }])(
    'does not recognise %j',
    (json) => {
      expect(detectManifestMediaType(json)).toBeUndefined();
    },
  );
});

describe('resolveManifestMediaType', () => {
  it('keeps a manifest Content-Type from upstream', () => {
    expect(resolveManifestMediaType(`${MediaType.DOCKER_MANIFEST}; charset=utf-8`, bytes(DOCKER_IMAGE))).toBe(MediaType.DOCKER_MANIFEST);
  });

  it('detects the type when upstream sends a generic one', () => {
    expect(resolveManifestMediaType('application/json', bytes(DOCKER_LIST))).toBe(MediaType.DOCKER_MANIFEST_LIST);
    expect(resolveManifestMediaType(undefined, bytes(OCI_INDEX_NO_MEDIA_TYPE))).toBe(MediaType.OCI_INDEX);
    expect(resolveManifestMediaType('text/plain', Buffer.from('not json'))).toBeUndefined();
  });

  it('reads from a slice of a larger buffer', () => {
    const whole = Buffer.concat([Buffer.from('junk'), bytes(OCI_INDEX_NO_MEDIA_TYPE)]);
    expect(resolveManifestMediaType(undefined, whole.subarray(4))).toBe(MediaType.OCI_INDEX);
  });
});

describe('parseManifestDescriptors', () => {
  it('returns config, layers and subject of an image manifest', () => {
    const parsed = parseManifestDescriptors(bytes(OCI_IMAGE));
    expect(parsed.mediaType).toBe(MediaType.OCI_MANIFEST);
    expect(parsed.isIndex).toBe(false);
    expect(parsed.manifests).toEqual([]);
    expect(parsed.config).toEqual({ mediaType: MediaType.OCI_CONFIG, digest: Digest.parse(d('1')), size: 1470 });
    expect(parsed.layers.map((l) => l.digest.toString())).toEqual([d('2'), d('3')]);
    expect(parsed.layers[1].urls).toEqual(['https://cdn.example/x']);
    expect(parsed.layers[1].annotations).toEqual({ a: 'b' });
    expect(parsed.subject?.digest.toString()).toBe(d('4'));
    expect(parsed.all.map((x) => x.digest.toString())).toEqual([d('1'), d('2'), d('3'), d('4')]);
  });

  it('returns the children of a Docker manifest list with platforms', () => {
    const parsed = parseManifestDescriptors(bytes(DOCKER_LIST));
    expect(parsed.isIndex).toBe(true);
    expect(parsed.config).toBeUndefined();
    expect(parsed.layers).toEqual([]);
    expect(parsed.manifests.map((m) => m.platform)).toEqual([
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm', os: 'linux', variant: 'v7' },
    ]);
  });

  it('handles an OCI index without mediaType and a Docker image manifest', () => {
    const index = parseManifestDescriptors(bytes(OCI_INDEX_NO_MEDIA_TYPE));
    expect(index.mediaType).toBe(MediaType.OCI_INDEX);
    expect(index.manifests[0].platform).toEqual({ architecture: 'amd64', os: 'windows', 'os.version': '10.0.17763.1' });
    const image = parseManifestDescriptors(bytes(DOCKER_IMAGE));
    expect(image.all.map((x) => x.mediaType)).toEqual([MediaType.DOCKER_CONFIG, MediaType.DOCKER_LAYER]);
  });

  it('accepts an artifact manifest with the empty config and no layers field', () => {
    const artifact = {
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      artifactType: 'application/vnd.example.sbom',
      config: { mediaType: MediaType.OCI_EMPTY, digest: d('4'), size: 2 },
    };
    expect(parseManifestDescriptors(bytes(artifact)).all).toHaveLength(1);
  });

  it('ignores malformed optional fields rather than failing', () => {
    const manifest = {
      ...DOCKER_LIST,
      manifests: [{ mediaType: MediaType.DOCKER_MANIFEST, digest: d('c'), size: 1, platform: 'linux', urls: [1], annotations: { a: 1 } }],
    };
    const [child] = parseManifestDescriptors(bytes(manifest)).manifests;
    expect(child.platform).toBeUndefined();
    expect(child.urls).toBeUndefined();
    expect(child.annotations).toBeUndefined();
  });

  it('enforces the size limit before parsing', () => {
    const body = bytes(OCI_IMAGE);
    expect(parseManifestDescriptors(body, { maxSize: body.length }).layers).toHaveLength(2);
    const err = invalid(() => parseManifestDescriptors(body, { maxSize: body.length - 1 }));
    expect(err.detail).toEqual({ size: body.length, max: body.length - 1 });
    invalid(() => parseManifestDescriptors(Buffer.alloc(MANIFEST_MAX_SIZE + 1, 0x20)));
  });

  it.each([
    ['not JSON', Buffer.from('{')],
    ['an array', bytes([OCI_IMAGE])],
    ['null', bytes(null)],
    ['a string', bytes('manifest')],
    ['schema 1', bytes({ schemaVersion: 1, fsLayers: [] })],
    ['schemaVersion missing', bytes({ ...OCI_IMAGE, schemaVersion: undefined })],
    ['schemaVersion as string', bytes({ ...OCI_IMAGE, schemaVersion: '2' })],
    ['unrecognisable shape', bytes({ schemaVersion: 2, foo: 1 })],
    ['declared index without manifests', bytes({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX })],
    ['manifests not an array', bytes({ ...DOCKER_LIST, manifests: {} })],
    ['config missing', bytes({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, layers: [] })],
    ['layers not an array', bytes({ ...OCI_IMAGE, layers: 'x' })],
    ['layer not an object', bytes({ ...OCI_IMAGE, layers: [null] })],
    ['layer without mediaType', bytes({ ...OCI_IMAGE, layers: [{ digest: d('2'), size: 1 }] })],
    ['layer with a bad digest', bytes({ ...OCI_IMAGE, layers: [{ mediaType: MediaType.OCI_LAYER, digest: 'sha256:xyz', size: 1 }] })],
    ['layer with an unknown algorithm', bytes({ ...OCI_IMAGE, layers: [{ mediaType: MediaType.OCI_LAYER, digest: 'md5:abc', size: 1 }] })],
    ['layer with a negative size', bytes({ ...OCI_IMAGE, layers: [{ mediaType: MediaType.OCI_LAYER, digest: d('2'), size: -1 }] })],
    ['layer with a fractional size', bytes({ ...OCI_IMAGE, layers: [{ mediaType: MediaType.OCI_LAYER, digest: d('2'), size: 1.5 }] })],
    ['layer with a string size', bytes({ ...OCI_IMAGE, layers: [{ mediaType: MediaType.OCI_LAYER, digest: d('2'), size: '1' }] })],
    ['subject null', bytes({ ...OCI_IMAGE, subject: null })],
  ])('refuses %s with MANIFEST_INVALID', (_label, body) => {
    const err = invalid(() => parseManifestDescriptors(body));
    expect(err.status).toBe(400);
  });

  it('names the failing descriptor', () => {
    const err = invalid(() => parseManifestDescriptors(bytes({ ...OCI_IMAGE, layers: [OCI_IMAGE.layers[0], { mediaType: 'x', digest: 'bad', size: 1 }] })));
    expect(err.message).toContain('layers[1].digest');
  });
});
