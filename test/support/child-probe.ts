/**
 * Measurements that must not share the Jest process: RSS there counts the test runner, every suite's
 * leftovers and the garbage nobody has collected yet. A probe is a script that does one thing in a fresh
 * `node` process and prints its result as one JSON line, marked so that whatever else it prints (a logger,
 * a warning) cannot be mistaken for it.
 *
 * Probes are test/support/*.probe.ts, built to dist/test/support/*.probe.js by `npm run build`
 * (tsconfig.build.json; `npm test` builds first), and run from there like the app's own processes.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { distPath } from './app-process.js';

const RESULT_MARK = 'PROBE-RESULT ';

/** The built script of `test/support/<name>.probe.ts`. */
export function builtProbe(name: string): string {
  const script = distPath(`dist/test/support/${name}.probe.js`);
  if (!existsSync(script)) throw new Error(`${script} is missing: run \`npm run build\` first (npm test does)`);
  return script;
}

/**
 * Runs `node <script> ...args` and resolves with the result it reported; rejects, with what the probe
 * printed, when it exits without one, fails, or outlives `timeoutMs` (then it is killed).
 */
export function runChildProbe<T>(script: string, args: string[], options: { timeoutMs: number }): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.length > 64 * 1024) stderr = stderr.slice(-16 * 1024);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    const output = () => `stdout:\n${stdout.slice(-8000)}\nstderr:\n${stderr.slice(-8000)}`;
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARK));
      if (code !== 0 || !line) {
        const how = signal === 'SIGKILL' ? `was killed after ${options.timeoutMs} ms` : `exited with code ${code}, signal ${signal}`;
        reject(new Error(`probe ${script} ${args.join(' ')} ${how}${line ? '' : ' and reported no result'}\n${output()}`));
        return;
      }
      resolve(JSON.parse(line.slice(RESULT_MARK.length)) as T);
    });
  });
}

/** In a probe: reports its result to runChildProbe. */
export function reportProbeResult(result: unknown): void {
  process.stdout.write(`${RESULT_MARK}${JSON.stringify(result)}\n`);
}

/** In a probe: peak resident set size above the level when tracking started, sampled every 10 ms and on demand. */
export function trackRss() {
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage.rss());
  };
  const timer = setInterval(sample, 10);
  return {
    baseline,
    sample,
    /** Peak growth so far, in bytes. */
    growth: () => {
      sample();
      return peak - baseline;
    },
    stop: () => clearInterval(timer),
  };
}
