import { parseBasicAuthorization } from './basic-credentials.js';

const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;

describe('HTTP Basic credentials', () => {
  it('decodes username and password (the password may contain colons)', () => {
    expect(parseBasicAuthorization(basic('alice:cvrpat-a:b'))).toEqual({ username: 'alice', password: 'cvrpat-a:b' });
    expect(parseBasicAuthorization(`basic   ${Buffer.from('u:p').toString('base64')}`)).toEqual({ username: 'u', password: 'p' });
  });

  it('ignores other schemes and absent headers', () => {
    expect(parseBasicAuthorization(undefined)).toBeNull();
    expect(parseBasicAuthorization('Bearer abc')).toBeNull();
    expect(parseBasicAuthorization('Basically')).toBeNull();
  });

  it.each(['Basic', 'Basic !!!', basic('nocolon'), basic(':password'), basic('user:')])('calls %j malformed', (header) => {
    expect(parseBasicAuthorization(header)).toBe('malformed');
  });
});
