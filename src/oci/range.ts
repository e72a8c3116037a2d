/**
 * Single byte ranges (RFC 9110 section 14): `Range: bytes=a-b | a- | -n` against a known size.
 * Multi-range and malformed headers are ignored (the whole representation is served, which RFC 9110
 * allows); a well-formed range that starts at or past the end is unsatisfiable (416).
 */

/** An inclusive byte range: `start <= end < size`. */
export interface ByteRange {
  start: number;
  end: number;
}

export type RangeResult = ByteRange | 'unsatisfiable' | undefined;

const SINGLE_RANGE = /^bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$/i;

/**
 * Resolve a Range header for a representation of `size` bytes: the inclusive range to send (206),
 * `'unsatisfiable'` (416 with `Content-Range: bytes *\/size`), or undefined to ignore it (200).
 */
export function parseRange(header: string | undefined | null, size: number): RangeResult {
  if (typeof header !== 'string' || !Number.isSafeInteger(size) || size < 0) return undefined;
  const match = SINGLE_RANGE.exec(header);
  if (!match) return undefined;
  const [, first, last] = match;
  // Digit strings past 2^53 lose precision, but only when they exceed any real size, where the outcome
  // (unsatisfiable, clamped, or whole) is the same.
  if (first === '') {
    if (last === '') return undefined;
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  return { start, end };
}

/** `Content-Range` of a 206: `bytes start-end/size`. */
export function contentRange(start: number, end: number, size: number): string {
  return `bytes ${start}-${end}/${size}`;
}

/** `Content-Range` of a 416: `bytes *\/size`. */
export function unsatisfiedContentRange(size: number): string {
  return `bytes */${size}`;
}

/** Bytes in an inclusive range (the 206's Content-Length). */
export function rangeLength(range: ByteRange): number {
  return range.end - range.start + 1;
}
