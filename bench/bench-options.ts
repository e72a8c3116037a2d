/** Command-line options of `npm run bench -- [options]`. */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SCENARIOS = ['pulls', 'blob', 'manifests', 'concurrent', 'replicas', 'memory', 'rows', 'offload'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface BenchOptions {
  smoke: boolean;
  /** The scenarios to run (default: all). */
  only: ReadonlySet<ScenarioName>;
  s3: boolean;
  rounds: number;
  resultsDir: string;
  /** The app's HTTP_WORKERS: a count (default 1: one process, as in every earlier run) or `auto` (one per CPU). */
  httpWorkers: string;
  /** Write a V8 CPU profile of the app (`--cpu-prof`) next to the results. */
  profile: boolean;
}

export const USAGE = `Usage: npm run bench -- [options]

  --smoke             tiny images, 1 round, skips the 2 GiB and 1,000,000-row rows (CI keeps it working)
  --s3                the app stores blobs in S3 (an s3rver child process) instead of the filesystem
  --rounds N          rounds of alternating measurements (default 3; smoke 1)
  --results-dir DIR   where the JSON (timestamped and latest.json) and latest.md go (default bench/results)
  --only LIST         run only these scenarios, comma-separated: ${SCENARIOS.join(', ')}
                      (the other rows are left out of the report)
  --profile           run the app with --cpu-prof; the .cpuprofile and a summary land in the results directory
  --http-workers N    the app's HTTP_WORKERS (default 1: one process): a count, or auto (one per CPU with
                      DATABASE_URL and REDIS_URL, as nginx runs worker_processes auto; 1 on the embedded defaults)
  --help              this text

The app runs in its production configuration when DATABASE_URL (Postgres; a scratch database is created
and dropped) and REDIS_URL (BullMQ, RUN_JOBS=true) are set, otherwise on its embedded defaults. The
replicas scenario (8 concurrent cold pulls split across 2 app replicas and a worker sharing a scratch
database, a queue prefix and storage) needs both; without them its rows say so. The offload scenario runs
two more deployments of the app: behind nginx with BLOB_OFFLOAD=x-accel, and on S3 (s3rver) with
BLOB_REDIRECT=presigned.
Needs Debian's docker-registry and skopeo; nginx and wrk are used when installed.`;

/** bench/results of the repository (this file runs from dist/bench/). */
const DEFAULT_RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

export class UsageError extends Error {}

export function parseBenchOptions(argv: readonly string[]): BenchOptions | 'help' {
  const options: BenchOptions = {
    smoke: false,
    only: new Set(SCENARIOS),
    s3: false,
    rounds: 0,
    resultsDir: DEFAULT_RESULTS_DIR,
    profile: false,
    httpWorkers: '1',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--smoke':
        options.smoke = true;
        break;
      case '--s3':
        options.s3 = true;
        break;
      case '--rounds': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1 || n > 50) throw new UsageError('--rounds must be a whole number from 1 to 50');
        options.rounds = n;
        break;
      }
      case '--results-dir':
        options.resultsDir = resolve(value());
        break;
      case '--only': {
        const names = value()
          .split(',')
          .map((n) => n.trim())
          .filter(Boolean);
        const unknown = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
        if (unknown.length || names.length === 0)
          throw new UsageError(`--only takes a list of ${SCENARIOS.join(', ')}; got ${unknown.join(', ') || 'nothing'}`);
        options.only = new Set(names as ScenarioName[]);
        break;
      }
      case '--profile':
        options.profile = true;
        break;
      case '--http-workers': {
        const v = value();
        if (v !== 'auto' && !/^([1-9]|[1-5][0-9]|6[0-4])$/.test(v)) throw new UsageError('--http-workers must be auto or a whole number from 1 to 64');
        options.httpWorkers = v;
        break;
      }
      case '--help':
      case '-h':
        return 'help';
      default:
        throw new UsageError(`unknown option ${arg}`);
    }
  }
  if (options.rounds === 0) options.rounds = options.smoke ? 1 : 3;
  return options;
}
