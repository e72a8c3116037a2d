import { OciError, OciErrorCode } from './oci-error.js';
import { REPOSITORY_NAME_MAX_LENGTH, RepositoryName } from './repository-name.js';

describe('RepositoryName', () => {
  it.each([
    'alpine',
    'library/alpine',
    'a/b/c/d/e',
    'my-org/my-app',
    'my--org/my---app',
    'a.b/c_d/e__f',
    'gitlab-org/build/cng/gitlab-webservice-ee',
    '0/1',
    'x'.repeat(REPOSITORY_NAME_MAX_LENGTH),
    'manifests/blobs/tags',
  ])('accepts %j', (value) => {
    const name = RepositoryName.parse(value);
    expect(name.value).toBe(value);
    expect(name.toString()).toBe(value);
    expect(RepositoryName.isValid(value)).toBe(true);
  });

  it.each([
    ['', 'empty'],
    ['Library/alpine', 'uppercase'],
    ['library/Alpine', 'uppercase'],
    ['/library/alpine', 'leading or trailing slash'],
    ['library/alpine/', 'leading or trailing slash'],
    ['library//alpine', 'empty path component'],
    ['library/../alpine', 'relative path component'],
    ['..', 'relative path component'],
    ['library/./alpine', 'relative path component'],
    ['a..b', 'grammar'],
    ['a___b', 'grammar'],
    ['a.-b', 'grammar'],
    ['-a', 'grammar'],
    ['a-', 'grammar'],
    ['.a', 'grammar'],
    ['a_', 'grammar'],
    ['a b', 'grammar'],
    ['a:b', 'grammar'],
    ['a\\b', 'grammar'],
    ['a%2fb', 'grammar'],
    ['caf\u00e9', 'grammar'],
    ['x'.repeat(REPOSITORY_NAME_MAX_LENGTH + 1), 'longer than'],
  ])('rejects %j (%s) with NAME_INVALID', (value, reason) => {
    expect(RepositoryName.isValid(value)).toBe(false);
    try {
      RepositoryName.parse(value);
      throw new Error('expected NAME_INVALID');
    } catch (err) {
      expect(err).toBeInstanceOf(OciError);
      expect((err as OciError).code).toBe(OciErrorCode.NAME_INVALID);
      expect((err as OciError).status).toBe(400);
      expect((err as OciError).message).toContain(reason);
    }
  });

  it('counts length over the whole name, slashes included', () => {
    const name = `${'a'.repeat(127)}/${'b'.repeat(127)}`;
    expect(name).toHaveLength(255);
    expect(RepositoryName.isValid(name)).toBe(true);
    expect(RepositoryName.isValid(`${name}c`)).toBe(false);
  });

  it('exposes components and compares by value', () => {
    const name = RepositoryName.parse('library/alpine');
    expect(name.components).toEqual(['library', 'alpine']);
    expect(name.equals('library/alpine')).toBe(true);
    expect(name.equals(RepositoryName.parse('library/alpine'))).toBe(true);
    expect(name.equals('library/busybox')).toBe(false);
    expect(name.equals(undefined)).toBe(false);
    expect(JSON.stringify({ name })).toBe('{"name":"library/alpine"}');
  });

  it('rejects non-strings as NAME_INVALID', () => {
    expect(() => RepositoryName.parse(null as unknown as string)).toThrow(OciError);
  });
});
