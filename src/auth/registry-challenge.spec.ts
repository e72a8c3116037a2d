import { bearerToken, challengeHeader, requestBaseUrl } from './registry-token.service.js';

describe('registry challenge', () => {
  it('names the realm and service, plus scope and error when given', () => {
    expect(challengeHeader('https://cache.example.com')).toBe('Bearer realm="https://cache.example.com/jwt/auth",service="virtual_registry"');
    expect(challengeHeader('http://h:3000', 'repository:virtual_registries/containers/1/a:pull', 'invalid_token')).toBe(
      'Bearer realm="http://h:3000/jwt/auth",service="virtual_registry",scope="repository:virtual_registries/containers/1/a:pull",error="invalid_token"',
    );
  });

  it('names the registry in the realm on a mirror route', () => {
    expect(challengeHeader('http://h', 'repository:virtual_registries/containers/3/a:pull', undefined, 3)).toBe(
      'Bearer realm="http://h/jwt/auth?registry=3",service="virtual_registry",scope="repository:virtual_registries/containers/3/a:pull"',
    );
  });

  it('escapes quotes so a value cannot break out of its parameter', () => {
    expect(challengeHeader('http://a"b\\c')).toBe('Bearer realm="http://a\\"b\\\\c/jwt/auth",service="virtual_registry"');
  });

  it('takes the base from PUBLIC_URL, else from the request, refusing a Host it would not echo', () => {
    expect(requestBaseUrl('https://cache.example.com', { protocol: 'http', host: 'evil' })).toBe('https://cache.example.com');
    expect(requestBaseUrl(undefined, { protocol: 'http', host: '127.0.0.1:5000' })).toBe('http://127.0.0.1:5000');
    expect(requestBaseUrl(undefined, { protocol: 'https', host: '[::1]:443' })).toBe('https://[::1]:443');
    expect(requestBaseUrl(undefined, { protocol: 'http', host: 'x",error="y' })).toBe('http://localhost');
    expect(requestBaseUrl(undefined, { protocol: 'http', host: '' })).toBe('http://localhost');
  });

  it('reads a Bearer token and nothing else', () => {
    expect(bearerToken('Bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken('Bearer a b')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });
});
