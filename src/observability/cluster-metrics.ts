import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AggregatorRegistry, type Registry } from 'prom-client';

/**
 * The metrics of every HTTP worker (HTTP_WORKERS > 1), for `/metrics` on whichever worker a scrape
 * reaches. The worker asks the cluster primary over the IPC channel; the primary collects every worker's
 * registry (prom-client's AggregatorRegistry) and merges them: counters and histograms add up, each
 * gauge as its `aggregator` says (MetricsService).
 */

const REQUEST = 'cvr:cluster-metrics-request';
const RESPONSE = 'cvr:cluster-metrics-response';
/** prom-client's own wait for the workers' registries is 5 s; ours covers it. */
const RESPONSE_TIMEOUT_MS = 7_000;

interface MetricsRequest {
  type: typeof REQUEST;
  id: string;
}

interface MetricsResponse {
  type: typeof RESPONSE;
  id: string;
  text?: string;
  error?: string;
}

/** Whether this process is an HTTP worker of a cluster primary (the other side of answerClusterMetrics). */
export function isClusterWorker(): boolean {
  return cluster.isWorker && typeof process.send === 'function';
}

/** In an HTTP worker: lets the primary collect `registry` (prom-client answers its requests). */
export function offerToCluster(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // The constructor installs prom-client's listener that answers the primary.
  new AggregatorRegistry();
}

/** In the primary: answers the workers' requests with the merged metrics of all of them. */
export function answerClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker: Worker, message: unknown) => {
    if (!isMessage<MetricsRequest>(message, REQUEST)) return;
    const reply = (answer: Omit<MetricsResponse, 'type' | 'id'>) => {
      if (worker.isConnected()) worker.send({ type: RESPONSE, id: message.id, ...answer } satisfies MetricsResponse);
    };
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) }),
    );
  });
}

/** In an HTTP worker: the merged metrics of every worker, in the Prometheus text format. */
export function clusterMetrics(): Promise<string> {
  const id = randomUUID();
  return new Promise<string>((resolve, reject) => {
    const done = (err: Error | undefined, text?: string) => {
      clearTimeout(timer);
      process.off('message', onMessage);
      if (err) reject(err);
      else resolve(text ?? '');
    };
    const onMessage = (message: unknown) => {
      if (!isMessage<MetricsResponse>(message, RESPONSE) || message.id !== id) return;
      done(message.error === undefined ? undefined : new Error(`the cluster primary could not collect the workers' metrics: ${message.error}`), message.text);
    };
    const timer = setTimeout(() => done(new Error(`the cluster primary did not answer within ${RESPONSE_TIMEOUT_MS} ms`)), RESPONSE_TIMEOUT_MS);
    process.on('message', onMessage);
    process.send!({ type: REQUEST, id } satisfies MetricsRequest, undefined, undefined, (err: Error | null) => {
      if (err) done(err);
    });
  });
}

function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}
