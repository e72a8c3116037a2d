/**
 * Every migration, in order. ESM cannot glob-load TypeScript migrations under jest, so they are listed.
 * Add new ones at the end; never edit one that has shipped.
 */
import { Initial1764270000000 } from './1764270000000-initial.js';
import { Accounts1764270001000 } from './1764270001000-accounts.js';
import { VirtualRegistries1764270002000 } from './1764270002000-virtual-registries.js';
import { CleanupPolicies1764270003000 } from './1764270003000-cleanup-policies.js';
import { Prefetches1764270004000 } from './1764270004000-prefetches.js';
import { MirrorMode1764270005000 } from './1764270005000-mirror-mode.js';

export const migrations = [
  Initial1764270000000,
  Accounts1764270001000,
  VirtualRegistries1764270002000,
  CleanupPolicies1764270003000,
  Prefetches1764270004000,
  MirrorMode1764270005000,
];
