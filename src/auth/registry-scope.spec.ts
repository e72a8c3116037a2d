import {
  accessCovers,
  MAX_SCOPES_PER_REQUEST,
  parseBareRepositoryScope,
  parseRepositoryScope,
  pullScope,
  requestedScopes,
  resolveRequestedScope,
} from './registry-scope.js';

describe('registry scopes', () => {
  it('parses a pull scope of a virtual registry, in both spellings', () => {
    expect(parseRepositoryScope('repository:virtual_registries/containers/12/library/alpine:pull')).toEqual({
      registryId: 12,
      repository: 'library/alpine',
      resourceName: 'virtual_registries/containers/12/library/alpine',
      actions: ['pull'],
    });
    expect(parseRepositoryScope('repository:virtual_registries/container/3/a/b/c:pull,push')).toMatchObject({
      registryId: 3,
      repository: 'a/b/c',
      actions: ['pull', 'push'],
    });
  });

  it.each([
    'registry:catalog:*',
    'repository:library/alpine:pull',
    'repository:virtual_registries/containers/0/alpine:pull',
    'repository:virtual_registries/containers/01/alpine:pull',
    'repository:virtual_registries/containers/2147483648/alpine:pull',
    'repository:virtual_registries/containers/1/Alpine:pull',
    'repository:virtual_registries/containers/1/../x:pull',
    'repository:virtual_registries/containers/1/alpine',
    'repository:virtual_registries/containers/1/alpine:pu ll',
    'repository:virtual_registries/containers/1/:pull',
    'repository:virtual_registries/containers/x/alpine:pull',
    `repository:virtual_registries/containers/1/${'a'.repeat(600)}:pull`,
    '',
    ':::',
  ])('refuses %j', (scope) => {
    expect(parseRepositoryScope(scope)).toBeNull();
  });

  it('formats the scope a pull needs', () => {
    expect(pullScope(7, 'library/alpine')).toBe('repository:virtual_registries/containers/7/library/alpine:pull');
  });

  it('collects repeated and space-separated scope parameters, without duplicates', () => {
    expect(requestedScopes(undefined)).toEqual([]);
    expect(requestedScopes('a b  a')).toEqual(['a', 'b']);
    expect(requestedScopes(['a', 'c', ''])).toEqual(['a', 'c']);
  });

  it('keeps the first 64 distinct scopes of a request and drops the rest', () => {
    const many = Array.from({ length: 20_000 }, (_, i) => `s${i % 10_000}`);
    expect(requestedScopes(many)).toEqual(Array.from({ length: MAX_SCOPES_PER_REQUEST }, (_, i) => `s${i}`));
    expect(requestedScopes(['a a', ...many.slice(0, 100).map((s) => `${s} ${s}`)])).toHaveLength(MAX_SCOPES_PER_REQUEST);
    expect(requestedScopes(many.join(' '))).toHaveLength(64);
  });

  it('decides coverage by registry id and exact repository, not by spelling', () => {
    const access = [{ type: 'repository', name: 'virtual_registries/container/1/library/alpine', actions: ['pull'] }];
    expect(accessCovers(access, 1, 'library/alpine')).toBe(true);
    expect(accessCovers(access, 2, 'library/alpine')).toBe(false);
    expect(accessCovers(access, 1, 'library/busybox')).toBe(false);
    expect(accessCovers(access, 1, 'library/alpine/sub')).toBe(false);
    expect(accessCovers([{ type: 'repository', name: access[0].name, actions: ['push'] }], 1, 'library/alpine')).toBe(false);
    expect(accessCovers([], 1, 'library/alpine')).toBe(false);
    expect(accessCovers('nonsense', 1, 'library/alpine')).toBe(false);
    expect(accessCovers([null, 3], 1, 'library/alpine')).toBe(false);
  });

  describe("scopes of mirror clients (the image's own name)", () => {
    it("reads a bare scope as the mirror registry's, and leaves prefixed scopes as they are", () => {
      expect(parseBareRepositoryScope('repository:library/alpine:pull')).toEqual({ repository: 'library/alpine', actions: ['pull'] });
      expect(resolveRequestedScope('repository:library/alpine:pull', 4)).toEqual({
        registryId: 4,
        repository: 'library/alpine',
        resourceName: 'virtual_registries/containers/4/library/alpine',
        actions: ['pull'],
      });
      expect(resolveRequestedScope('repository:virtual_registries/containers/2/library/alpine:pull', 4)).toMatchObject({ registryId: 2 });
    });

    it('ignores a bare scope without a mirror registry, and what is not a repository scope', () => {
      expect(resolveRequestedScope('repository:library/alpine:pull', undefined)).toBeNull();
      for (const scope of [
        'registry:catalog:*',
        'repository:Library/alpine:pull',
        'repository:../x:pull',
        'repository:alpine',
        'repository::pull',
        `repository:${'a'.repeat(600)}:pull`,
      ]) {
        expect(resolveRequestedScope(scope, 4)).toBeNull();
      }
    });
  });
});
