import { decodeCacheEntryId, encodeCacheEntryId } from './cache-entry-id.js';

describe('cache entry id', () => {
  it('is URL-safe Base64 of "<upstream_id> <relative_path>"', () => {
    const id = encodeCacheEntryId(15, '/library/nginx/manifests/latest');
    expect(id).toMatch(/^[A-Za-z0-9_-]+=*$/);
    expect(Buffer.from(id, 'base64url').toString()).toBe('15 /library/nginx/manifests/latest');
  });

  it('round-trips paths whose Base64 would contain + and /', () => {
    const path = '/a/b?/manifests/sha256:ffffffff~~~';
    for (let n = 0; n < 4; n++) {
      const id = encodeCacheEntryId(7, path + 'x'.repeat(n));
      expect(id).not.toMatch(/[+/]/);
      expect(decodeCacheEntryId(id)).toEqual({ upstreamId: 7, relativePath: path + 'x'.repeat(n) });
    }
  });

  it("decodes GitLab's standard-alphabet example and unpadded ids", () => {
    expect(decodeCacheEntryId('MTUgbGlicmFyeS9uZ2lueC9tYW5pZmVzdC9zaGEyNTY6YWJjZGVmZ2hpams=')).toEqual({
      upstreamId: 15,
      relativePath: 'library/nginx/manifest/sha256:abcdefghijk',
    });
    expect(decodeCacheEntryId('MTUgbGlicmFyeS9uZ2lueC9tYW5pZmVzdC9zaGEyNTY6YWJjZGVmZ2hpams')?.upstreamId).toBe(15);
  });

  it.each([
    '',
    '!!!',
    Buffer.from('abc /x').toString('base64'),
    Buffer.from('0 /x').toString('base64'),
    Buffer.from('99999999999 /x').toString('base64'),
    Buffer.from('12').toString('base64'),
  ])('refuses %j', (id) => {
    expect(decodeCacheEntryId(id)).toBeUndefined();
  });
});
