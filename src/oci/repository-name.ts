/**
 * Repository names (`library/alpine`, `team/app/api`) per the OCI distribution spec 1.1:
 *
 *     [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 *
 * at most 255 characters (CNCF Distribution's limit, which clients also apply). Components are checked
 * one by one so the error says what is wrong; the grammar alone already excludes `..`, empty components,
 * uppercase and leading or trailing slashes.
 */
import { OciError, OciErrorCode } from './oci-error.js';

export const REPOSITORY_NAME_MAX_LENGTH = 255;

/** One path component: alphanumeric runs joined by `.`, `_`, `__` or one or more `-`. */
const COMPONENT_PATTERN = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;

export class RepositoryName {
  private constructor(readonly value: string) {}

  /** Validate a name; anything outside the grammar is NAME_INVALID. */
  static parse(value: string): RepositoryName {
    const problem = RepositoryName.problem(value);
    if (problem) {
      throw new OciError(OciErrorCode.NAME_INVALID, `invalid repository name: ${problem}`, {
        detail: { name: typeof value === 'string' ? value.slice(0, REPOSITORY_NAME_MAX_LENGTH + 1) : undefined },
      });
    }
    return new RepositoryName(value);
  }

  static isValid(value: string): boolean {
    return RepositoryName.problem(value) === undefined;
  }

  /** Why `value` is not a valid name, or undefined when it is. */
  private static problem(value: string): string | undefined {
    if (typeof value !== 'string' || value.length === 0) return 'empty';
    if (value.length > REPOSITORY_NAME_MAX_LENGTH) return `longer than ${REPOSITORY_NAME_MAX_LENGTH} characters`;
    if (value.startsWith('/') || value.endsWith('/')) return 'leading or trailing slash';
    for (const component of value.split('/')) {
      if (component.length === 0) return 'empty path component';
      if (component === '.' || component === '..') return 'relative path component';
      if (/[A-Z]/.test(component)) return 'uppercase characters are not allowed';
      if (!COMPONENT_PATTERN.test(component)) return `component "${component.slice(0, 64)}" does not match the name grammar`;
    }
    return undefined;
  }

  /** The `/`-separated components: `['library', 'alpine']`. */
  get components(): string[] {
    return this.value.split('/');
  }

  equals(other: RepositoryName | string | undefined | null): boolean {
    if (other === undefined || other === null) return false;
    return (typeof other === 'string' ? other : other.value) === this.value;
  }

  toString(): string {
    return this.value;
  }

  toJSON(): string {
    return this.value;
  }
}
