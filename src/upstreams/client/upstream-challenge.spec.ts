import { findBearerChallenge, offersBasic, parseWwwAuthenticate } from './upstream-challenge.js';

describe('parseWwwAuthenticate', () => {
  it('parses a Docker Hub bearer challenge', () => {
    const header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"';
    expect(parseWwwAuthenticate(header)).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ]);
  });

  it('keeps commas inside quoted values (several actions in one scope)', () => {
    const [ch] = parseWwwAuthenticate('Bearer realm="https://r/token",scope="repository:a/b:pull,push",service="r"');
    expect(ch.params).toEqual({ realm: 'https://r/token', scope: 'repository:a/b:pull,push', service: 'r' });
  });

  it('resolves escaped quotes and backslashes in quoted strings', () => {
    const [ch] = parseWwwAuthenticate('Bearer realm="https://r/t",error_description="say \\"hi\\", then \\\\ go"');
    expect(ch.params.error_description).toBe('say "hi", then \\ go');
  });

  it('is case-insensitive for the scheme and parameter names, keeps value case', () => {
    const [ch] = parseWwwAuthenticate('BEARER Realm="https://R/Token", SERVICE = "Reg"');
    expect(ch.scheme).toBe('bearer');
    expect(ch.params).toEqual({ realm: 'https://R/Token', service: 'Reg' });
  });

  it('parses Basic with quoted and unquoted realms', () => {
    expect(parseWwwAuthenticate('Basic realm="Registry Realm"')).toEqual([{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
    expect(parseWwwAuthenticate('basic realm=registry')).toEqual([{ scheme: 'basic', params: { realm: 'registry' } }]);
    expect(parseWwwAuthenticate('Basic')).toEqual([{ scheme: 'basic', params: {} }]);
  });

  it('splits several challenges in one header and across header lines', () => {
    const got = parseWwwAuthenticate(['Basic realm="a, b", Bearer realm="https://t/x",service="s"', 'Negotiate abc+/==']);
    expect(got).toEqual([
      { scheme: 'basic', params: { realm: 'a, b' } },
      { scheme: 'bearer', params: { realm: 'https://t/x', service: 's' } },
      { scheme: 'negotiate', params: {}, token68: 'abc+/==' },
    ]);
  });

  it('splits a parameterless scheme followed by another challenge', () => {
    expect(parseWwwAuthenticate('Negotiate, Basic realm="x"').map((c) => c.scheme)).toEqual(['negotiate', 'basic']);
  });

  it('keeps the first of duplicated parameters', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://one/",realm="https://two/"')[0].params.realm).toBe('https://one/');
  });

  it('never throws on garbage and returns nothing for an absent header', () => {
    for (const junk of ['', ',,,', '"', '=== ,', 'Bearer realm="unterminated', 'Bearer ,,realm=', '\u0000\u00ff']) {
      expect(() => parseWwwAuthenticate(junk)).not.toThrow();
    }
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate('Bearer realm="unterminated')[0].params.realm).toBe('unterminated');
  });
});

describe('findBearerChallenge / offersBasic', () => {
  it('picks the first bearer challenge with an http(s) realm', () => {
    const challenges = parseWwwAuthenticate('Bearer realm="ftp://x", Bearer realm="https://auth/t",service="svc", Basic realm="r"');
    expect(findBearerChallenge(challenges)).toEqual({ realm: 'https://auth/t', service: 'svc', scope: undefined, error: undefined });
    expect(findBearerChallenge(parseWwwAuthenticate('Bearer realm="https://a",error="insufficient_scope"'))?.error).toBe('insufficient_scope');
    expect(offersBasic(challenges)).toBe(true);
  });

  it('has no bearer challenge without a realm', () => {
    expect(findBearerChallenge(parseWwwAuthenticate('Bearer service="x"'))).toBeUndefined();
    expect(offersBasic(parseWwwAuthenticate('Bearer realm="https://a"'))).toBe(false);
  });
});
