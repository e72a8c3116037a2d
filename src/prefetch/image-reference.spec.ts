import { parseImageReference } from './image-reference.js';

describe('parseImageReference', () => {
  const digest = `sha256:${'a'.repeat(64)}`;

  it('reads tags, digests and the default tag', () => {
    expect(parseImageReference('library/alpine:3.20')).toEqual({ repository: 'library/alpine', reference: '3.20' });
    expect(parseImageReference(`library/alpine@${digest}`)).toEqual({ repository: 'library/alpine', reference: digest });
    expect(parseImageReference(`library/alpine:3.20@${digest}`)).toEqual({ repository: 'library/alpine', reference: digest });
    expect(parseImageReference('library/alpine')).toEqual({ repository: 'library/alpine', reference: 'latest' });
    expect(parseImageReference('team/app:v1', ['linux/amd64', 'linux/arm64/v8', 'linux/amd64'])).toEqual({
      repository: 'team/app',
      reference: 'v1',
      platforms: ['linux/amd64', 'linux/arm64/v8'],
    });
  });

  it('refuses what is not a reference or a platform, saying which', () => {
    expect(() => parseImageReference('Library/Alpine:latest')).toThrow(/is not an image reference/);
    expect(() => parseImageReference('library/alpine:bad tag')).toThrow(/is not an image reference/);
    expect(() => parseImageReference('library/alpine@sha256:short')).toThrow(/is not an image reference/);
    expect(() => parseImageReference('../etc:latest')).toThrow(/is not an image reference/);
    expect(() => parseImageReference('library/alpine', ['amd64'])).toThrow(/"amd64" is not a platform/);
  });
});
