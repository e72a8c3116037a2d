/** Order statistics of measured samples (rounds, request latencies). */

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Linear-interpolated percentile (0..100); NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return NaN;
  const sorted = [...finite].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

/** Element-wise a[i] / b[i] (rounds paired with the baseline measured in the same round). */
export function pairedRatios(values: readonly number[], baseline: readonly number[]): number[] {
  const n = Math.min(values.length, baseline.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(values[i] / baseline[i]);
  return out;
}

/** `items` rotated left by `by`: round r starts with a different system so none is always first. */
export function rotated<T>(items: readonly T[], by: number): T[] {
  if (items.length === 0) return [];
  const k = ((by % items.length) + items.length) % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
