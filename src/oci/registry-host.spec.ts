import { canonicalRegistryHost, registryHostOfUrl } from './registry-host.js';

describe('registry hosts', () => {
  it("treats Docker Hub's three names as one", () => {
    expect(canonicalRegistryHost('docker.io')).toBe('docker.io');
    expect(canonicalRegistryHost('index.docker.io')).toBe('docker.io');
    expect(canonicalRegistryHost('Registry-1.Docker.IO')).toBe('docker.io');
    expect(registryHostOfUrl('https://registry-1.docker.io')).toBe('docker.io');
  });

  it('keeps ports other than 443, lower-cases, and drops :443', () => {
    expect(canonicalRegistryHost('GHCR.io')).toBe('ghcr.io');
    expect(canonicalRegistryHost('ghcr.io:443')).toBe('ghcr.io');
    expect(canonicalRegistryHost('127.0.0.1:5000')).toBe('127.0.0.1:5000');
    expect(canonicalRegistryHost('[::1]:5000')).toBe('[::1]:5000');
    expect(registryHostOfUrl('http://127.0.0.1:5000')).toBe('127.0.0.1:5000');
    expect(registryHostOfUrl('https://quay.io:443')).toBe('quay.io');
  });

  it('refuses what is not a host', () => {
    for (const bad of [
      '',
      ' ',
      'a/b',
      'http://x',
      'x:',
      'x:99999',
      'x:0',
      '-a.io',
      'a..b',
      'a_b.io',
      'a.io/path',
      `${'a'.repeat(64)}.io`,
      'x'.repeat(256),
      5,
      null,
    ]) {
      expect(canonicalRegistryHost(bad)).toBeNull();
    }
    expect(registryHostOfUrl('not a url')).toBeNull();
  });
});
