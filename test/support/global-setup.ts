/**
 * Jest global setup: reports which real-service suites will run (Postgres via DATABASE_URL,
 * Redis via REDIS_URL, the Debian docker-registry upstream, skopeo, podman) and why others are left out.
 * Self-contained: jest's moduleNameMapper does not apply to globalSetup, so no relative imports here.
 */
import { execFileSync } from 'node:child_process';

function hasBinary(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export default async function globalSetup(): Promise<void> {
  const pg = process.env.DATABASE_URL;
  const redis = process.env.REDIS_URL;
  const lines = [
    'Real-service suites in this run:',
    pg
      ? `postgres: yes (DATABASE_URL=${pg.replace(/\/\/[^@]*@/, '//***@')})`
      : 'postgres: no, DATABASE_URL is unset (database suites run on embedded PGlite only)',
    redis ? `bullmq/redis: yes (REDIS_URL=${redis})` : 'bullmq/redis: no, REDIS_URL is unset (queue suites run the inline driver only)',
    hasBinary('docker-registry')
      ? 'upstream docker-registry: yes'
      : 'upstream docker-registry: no, not installed (bash .ci/install-packages.sh); upstream e2e suites skip',
    hasBinary('skopeo') ? 'skopeo: yes' : 'skopeo: no (bash .ci/install-packages.sh); skopeo e2e tests skip',
    hasBinary('podman') ? 'podman: yes' : 'podman: no (bash .ci/install-packages.sh); podman e2e tests skip',
  ];
  process.stdout.write(`\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
}
