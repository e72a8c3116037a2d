import { execFileSync } from 'node:child_process';

/** Which real services and clients this test run can use. Suites skip themselves (with a reason) otherwise. */
export const realServices = {
  postgresUrl: process.env.DATABASE_URL || undefined,
  redisUrl: process.env.REDIS_URL || undefined,
  hasBinary(name: string): boolean {
    try {
      execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  },
};
