/**
 * Request-rate and latency measurement for small GETs (manifests). `wrk` (Debian package `wrk`) when it is
 * installed, otherwise an in-process loop on an undici Pool with the same number of keep-alive connections
 * for the same duration. Results say which tool made them; any non-200 answer fails the measurement.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { Client, Pool } from 'undici';

const run = promisify(execFile);

export type LoadTool = 'wrk' | 'undici';

export interface LoadOptions {
  durationSeconds: number;
  connections: number;
  headers: Record<string, string>;
  /** Aborting kills wrk / ends the loop (the benchmark is stopping). */
  signal?: AbortSignal;
}

export interface LoadResult {
  tool: LoadTool;
  requestsPerSecond: number;
  requests: number;
}

let wrkPresent: boolean | undefined;

export function loadTool(): LoadTool {
  if (wrkPresent === undefined) {
    try {
      execFileSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' });
      wrkPresent = true;
    } catch {
      wrkPresent = false;
    }
  }
  return wrkPresent ? 'wrk' : 'undici';
}

/** Requests per second of GET `url` with `connections` concurrent keep-alive connections. */
export async function measureRequestRate(url: string, options: LoadOptions): Promise<LoadResult> {
  await expectOk(url, options.headers);
  return loadTool() === 'wrk' ? wrkRate(url, options) : undiciRate(url, options);
}

async function expectOk(url: string, headers: Record<string, string>): Promise<void> {
  const res = await fetch(url, { headers });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url} -> ${res.status}: ${body.slice(0, 300)}`);
}

async function wrkRate(url: string, options: LoadOptions): Promise<LoadResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.durationSeconds}s`];
  for (const [name, value] of Object.entries(options.headers)) args.push('-H', `${name}: ${value}`);
  args.push(url);
  const { stdout } = await run('wrk', args, { timeout: (options.durationSeconds + 30) * 1000, signal: options.signal });
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  const total = /(\d+) requests in/.exec(stdout);
  if (!rate || !total) throw new Error(`could not read wrk's output:\n${stdout}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = Number(non2xx?.[1] ?? 0) + (socketErrors ? socketErrors.slice(1).reduce((s, n) => s + Number(n), 0) : 0);
  if (errors > 0) throw new Error(`wrk against ${url}: ${errors} failed requests of ${total[1]}:\n${stdout}`);
  return { tool: 'wrk', requestsPerSecond: Number(rate[1]), requests: Number(total[1]) };
}

async function undiciRate(url: string, options: LoadOptions): Promise<LoadResult> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: options.connections, pipelining: 1 });
  const path = `${target.pathname}${target.search}`;
  let requests = 0;
  let failure: Error | undefined;
  const started = performance.now();
  const deadline = started + options.durationSeconds * 1000;
  const worker = async () => {
    while (!failure && !options.signal?.aborted && performance.now() < deadline) {
      const res = await pool.request({ method: 'GET', path, headers: options.headers });
      await res.body.dump();
      if (res.statusCode !== 200) {
        failure = new Error(`GET ${url} -> ${res.statusCode} under load`);
        return;
      }
      requests++;
    }
  };
  try {
    await Promise.all(Array.from({ length: options.connections }, worker));
  } finally {
    await pool.close();
  }
  if (failure) throw failure;
  const seconds = (performance.now() - started) / 1000;
  return { tool: 'undici', requestsPerSecond: requests / seconds, requests };
}

/** Latencies (ms) of `count` sequential GETs of `url` on one keep-alive connection. */
export async function measureLatencies(url: string, headers: Record<string, string>, count: number): Promise<number[]> {
  const target = new URL(url);
  const client = new Client(target.origin);
  const path = `${target.pathname}${target.search}`;
  const latencies: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      const res = await client.request({ method: 'GET', path, headers });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`GET ${url} -> ${res.statusCode}`);
      latencies.push(performance.now() - started);
    }
  } finally {
    await client.close();
  }
  return latencies;
}
