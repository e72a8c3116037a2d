import { rootRegistryFor } from './root-registry.js';

describe('rootRegistryFor', () => {
  const config = { defaultRegistryId: 1, byHost: { 'hub-mirror.example': 3, 'ghcr-mirror.example:8443': 4, '[::1]': 5 } };

  it('maps a Host to its registry, with or without a port, case-insensitively', () => {
    expect(rootRegistryFor(config, 'hub-mirror.example')).toBe(3);
    expect(rootRegistryFor(config, 'HUB-MIRROR.example:5000')).toBe(3);
    expect(rootRegistryFor(config, 'ghcr-mirror.example:8443')).toBe(4);
    expect(rootRegistryFor(config, '[::1]:3000')).toBe(5);
  });

  it('falls back to the default registry, and to none without one', () => {
    expect(rootRegistryFor(config, 'ghcr-mirror.example')).toBe(1);
    expect(rootRegistryFor(config, 'other.example')).toBe(1);
    expect(rootRegistryFor(config, undefined)).toBe(1);
    expect(rootRegistryFor({ defaultRegistryId: undefined, byHost: {} }, 'hub-mirror.example')).toBeUndefined();
  });
});
