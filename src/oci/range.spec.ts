import { contentRange, parseRange, rangeLength, unsatisfiedContentRange } from './range.js';

describe('parseRange', () => {
  const size = 1000;

  it.each([
    ['bytes=0-499', { start: 0, end: 499 }],
    ['bytes=500-999', { start: 500, end: 999 }],
    ['bytes=500-5000', { start: 500, end: 999 }],
    ['bytes=999-999', { start: 999, end: 999 }],
    ['bytes=0-', { start: 0, end: 999 }],
    ['bytes=400-', { start: 400, end: 999 }],
    ['bytes=-1', { start: 999, end: 999 }],
    ['bytes=-200', { start: 800, end: 999 }],
    ['bytes=-5000', { start: 0, end: 999 }],
    ['BYTES=1-2', { start: 1, end: 2 }],
    ['bytes = 1 - 2 ', { start: 1, end: 2 }],
    ['bytes=10-99999999999999999999999', { start: 10, end: 999 }],
    ['bytes=-99999999999999999999999', { start: 0, end: 999 }],
  ])('%j -> %j', (header, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });

  it.each(['bytes=1000-', 'bytes=1000-2000', 'bytes=5000-6000', 'bytes=-0', 'bytes=99999999999999999999-'])('%j is unsatisfiable', (header) => {
    expect(parseRange(header, size)).toBe('unsatisfiable');
  });

  it.each([
    undefined,
    '',
    'bytes',
    'bytes=',
    'bytes=-',
    'bytes=5-1',
    'bytes=0-1,5-6',
    'bytes=0-1, 5-6',
    'items=0-1',
    'bytes=a-b',
    'bytes=1.5-2',
    'bytes=+1-2',
    'bytes=0x10-20',
    'bytes=1-2-3',
  ])('ignores %j', (header) => {
    expect(parseRange(header, size)).toBeUndefined();
  });

  it('treats every range of an empty representation as unsatisfiable', () => {
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=-5', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-0', 0)).toBe('unsatisfiable');
  });

  it('ignores the header for an unknown or invalid size', () => {
    expect(parseRange('bytes=0-1', -1)).toBeUndefined();
    expect(parseRange('bytes=0-1', Number.NaN)).toBeUndefined();
  });

  it('formats Content-Range and lengths', () => {
    expect(contentRange(0, 499, 1000)).toBe('bytes 0-499/1000');
    expect(unsatisfiedContentRange(1000)).toBe('bytes */1000');
    expect(rangeLength({ start: 10, end: 10 })).toBe(1);
    expect(rangeLength({ start: 0, end: 999 })).toBe(1000);
  });
});
