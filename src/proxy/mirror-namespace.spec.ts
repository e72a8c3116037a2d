import { OciError } from '../oci/index.js';
import { hostsServedBy, narrowToNamespace } from './mirror-namespace.js';
import type { PullTarget, PullUpstream } from '../upstreams/pull-target.js';

function upstream(id: number, url: string, mirrorHosts: string[] = []): PullUpstream {
  return { id, groupId: 1, position: id, cacheValidityHours: 24, mirrorHosts, descriptor: { id, url, authUrl: null, username: null, password: null } };
}

const hub = upstream(1, 'https://registry-1.docker.io');
const ghcr = upstream(2, 'https://ghcr.io');
const privateHubCache = upstream(3, 'http://10.0.0.5:5000', ['docker.io', 'quay.io']);
const target: PullTarget = { registryId: 7, groupId: 1, anonymousPull: false, upstreams: [hub, ghcr, privateHubCache] };

function refusal(ns: string): OciError {
  try {
    narrowToNamespace(target, ns);
  } catch (err) {
    return err as OciError;
  }
  throw new Error(`ns=${ns} was not refused`);
}

describe('narrowToNamespace (?ns= routing)', () => {
  it('leaves a request without ns alone', () => {
    expect(narrowToNamespace(target, undefined)).toBe(target);
  });

  it('keeps only the upstreams serving the host, in position order, Docker Hub names as one', () => {
    for (const ns of ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'DOCKER.IO']) {
      expect(narrowToNamespace(target, ns).upstreams.map((u) => u.id)).toEqual([1, 3]);
    }
    expect(narrowToNamespace(target, 'ghcr.io').upstreams.map((u) => u.id)).toEqual([2]);
    expect(narrowToNamespace(target, 'quay.io').upstreams.map((u) => u.id)).toEqual([3]);
    expect(narrowToNamespace(target, '10.0.0.5:5000').upstreams.map((u) => u.id)).toEqual([3]);
  });

  it('does not change the registry the target names (cache entries stay those of the kept upstreams)', () => {
    const narrowed = narrowToNamespace(target, 'ghcr.io');
    expect(narrowed).toMatchObject({ registryId: 7, groupId: 1 });
    expect(target.upstreams).toHaveLength(3);
  });

  it('refuses a host no upstream serves, and a malformed ns, with NAME_UNKNOWN 404', () => {
    for (const ns of ['gcr.io', '10.0.0.5', 'ghcr.io:5000', '', 'docker.io/library', '../x']) {
      const err = refusal(ns);
      expect(err).toBeInstanceOf(OciError);
      expect(err.code).toBe('NAME_UNKNOWN');
      expect(err.status).toBe(404);
    }
  });

  it('names the hosts an upstream serves', () => {
    expect([...hostsServedBy(privateHubCache)].sort()).toEqual(['10.0.0.5:5000', 'docker.io', 'quay.io']);
    expect([...hostsServedBy(hub)]).toEqual(['docker.io']);
  });
});
