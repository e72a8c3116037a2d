import { InvalidUpstreamUrlError, normalizeUpstreamUrl, repositoryNameOfPath } from './upstream-url.js';

describe('normalizeUpstreamUrl', () => {
  it.each([
    ['https://registry-1.docker.io', 'https://registry-1.docker.io'],
    ['https://registry-1.docker.io/', 'https://registry-1.docker.io'],
    ['https://registry-1.docker.io/v2', 'https://registry-1.docker.io'],
    ['https://registry-1.docker.io/v2/', 'https://registry-1.docker.io'],
    ['https://registry-1.docker.io//v2//', 'https://registry-1.docker.io'],
    ['HTTPS://Registry.Example.COM:443/', 'https://registry.example.com'],
    ['http://10.0.0.5:5000/v2', 'http://10.0.0.5:5000'],
    ['http://[::1]:5000/', 'http://[::1]:5000'],
    ['https://gitlab.example.com/prefix/path/', 'https://gitlab.example.com/prefix/path'],
    ['https://example.com/v2x', 'https://example.com/v2x'],
    ['  https://ghcr.io  ', 'https://ghcr.io'],
  ])('%s -> %s', (input, expected) => {
    expect(normalizeUpstreamUrl(input)).toBe(expected);
  });

  it.each([
    ['', 'required'],
    ['ftp://example.com', 'http:// or https://'],
    ['example.com', 'http:// or https://'],
    ['https://', 'valid URL'],
    ['https://user:pass@example.com', 'credentials'],
    ['https://example.com/?x=1', 'query'],
    ['https://example.com/#top', 'fragment'],
    [`https://example.com/${'a'.repeat(240)}`, 'too long'],
  ])('refuses %j (%s)', (input, message) => {
    expect(() => normalizeUpstreamUrl(input)).toThrow(InvalidUpstreamUrlError);
    expect(() => normalizeUpstreamUrl(input)).toThrow(message);
  });

  it('accepts exactly 255 characters', () => {
    const url = `https://example.com/${'a'.repeat(255 - 'https://example.com/'.length)}`;
    expect(url).toHaveLength(255);
    expect(normalizeUpstreamUrl(url)).toBe(url);
  });

  it('is idempotent', () => {
    const once = normalizeUpstreamUrl('HTTP://Example.com:80/mirror/v2/');
    expect(once).toBe('http://example.com/mirror');
    expect(normalizeUpstreamUrl(once)).toBe(once);
  });
});

describe('repositoryNameOfPath', () => {
  it.each([
    ['/library/alpine/manifests/latest', 'library/alpine'],
    ['/library/alpine/blobs/sha256:abc', 'library/alpine'],
    ['/a/b/c/tags/list?n=10&last=x', 'a/b/c'],
    ['/alpine/referrers/sha256:abc', 'alpine'],
    ['/my/manifests/repo/manifests/v1', 'my/manifests/repo'],
  ])('%s -> %s', (path, name) => {
    expect(repositoryNameOfPath(path)).toBe(name);
  });

  it.each(['/', '/_catalog', '/alpine/manifests/', '/manifests/latest'])('%s has none', (path) => {
    expect(repositoryNameOfPath(path)).toBeUndefined();
  });
});
