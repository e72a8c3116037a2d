/**
 * The time lifecycle decisions are made at (policy schedules, "not downloaded for N days", grace periods).
 * Injected through CLOCK so tests move time instead of sleeping.
 */
export interface Clock {
  now(): Date;
}

export const CLOCK = 'CLOCK';

export class SystemClock implements Clock {
  now(): Date {
    return new Date();
  }
}
