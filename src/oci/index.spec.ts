import * as oci from './index.js';

describe('src/oci public API', () => {
  it('exports the domain', () => {
    expect(typeof oci.Digest.parse).toBe('function');
    expect(typeof oci.digestStream).toBe('function');
    expect(typeof oci.RepositoryName.parse).toBe('function');
    expect(typeof oci.ManifestReference.parse).toBe('function');
    expect(typeof oci.parseRegistryPath).toBe('function');
    expect(typeof oci.relativePath).toBe('function');
    expect(typeof oci.parseManifestDescriptors).toBe('function');
    expect(typeof oci.parseRange).toBe('function');
    expect(oci.OciErrorCode.MANIFEST_UNKNOWN).toBe('MANIFEST_UNKNOWN');
    expect(new oci.OciError(oci.OciErrorCode.BLOB_UNKNOWN).status).toBe(404);
  });
});
