/**
 * Reference peer 1: CNCF Distribution 2.8 (Debian's `docker-registry`) in pull-through proxy mode in front
 * of the same upstream. A fresh cache is a new process with a new, empty storage directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { findFreePort } from '../../test/support/upstream-registry.js';
import type { StartedProcess, StartedProcesses } from '../started-processes.js';
import { waitForHttp } from './wait-for-http.js';
import type { PullSystem } from './pull-system.js';

export class DistributionProxySystem implements PullSystem {
  readonly id = 'distribution' as const;
  private process?: StartedProcess;
  private port = 0;
  private generation = 0;
  private storageDir?: string;
  private readonly stderr: string[] = [];

  constructor(
    private readonly upstreamUrl: string,
    private readonly workDir: string,
    private readonly processes: StartedProcesses,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  repositoryPath(name: string): string {
    return name;
  }

  skopeoCredentials(): string[] {
    return ['--src-no-creds'];
  }

  async authorization(): Promise<string | undefined> {
    return undefined;
  }

  async freshCache(): Promise<void> {
    await this.stopCurrent();
    this.generation += 1;
    const dir = join(this.workDir, `distribution-proxy-${this.generation}`);
    this.storageDir = join(dir, 'storage');
    await mkdir(this.storageDir, { recursive: true });
    this.port = await findFreePort();
    const configPath = join(dir, 'config.yml');
    await writeFile(
      configPath,
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        '  formatter: text',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${JSON.stringify(this.storageDir)}`,
        '  maintenance:',
        '    uploadpurging:',
        '      enabled: false',
        'http:',
        `  addr: ${JSON.stringify(`127.0.0.1:${this.port}`)}`,
        `  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}`,
        'proxy:',
        `  remoteurl: ${JSON.stringify(this.upstreamUrl)}`,
        '',
      ].join('\n'),
    );
    const started = this.processes.spawn('distribution proxy', 'docker-registry', ['serve', configPath], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.process = started;
    this.stderr.length = 0;
    createInterface({ input: started.child.stderr! }).on('line', (line) => {
      this.stderr.push(line);
      if (this.stderr.length > 50) this.stderr.shift();
    });
    await waitForHttp(`${this.baseUrl}/v2/`, [200], started, () => this.stderr.join('\n'));
  }

  async settle(): Promise<void> {}

  processGroups(): number[] {
    return this.process ? [this.process.pid] : [];
  }

  async close(): Promise<void> {
    await this.stopCurrent();
  }

  private async stopCurrent(): Promise<void> {
    if (this.process) await this.processes.stop(this.process);
    this.process = undefined;
    if (this.storageDir) await rm(join(this.storageDir, '..'), { recursive: true, force: true });
    this.storageDir = undefined;
  }
}
