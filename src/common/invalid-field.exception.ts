import { BadRequestException } from '@nestjs/common';
import { QueryFailedError } from 'typeorm';

/**
 * A 400 naming the offending field, the shape GitLab answers validation errors with and that the global
 * ValidationPipe uses too: `{"message": {"path": ["has already been taken"]}, "error": "Bad Request", "statusCode": 400}`.
 */
export class InvalidFieldException extends BadRequestException {
  constructor(field: string, message: string) {
    super({ message: { [field]: [message] }, error: 'Bad Request', statusCode: 400 });
  }
}

/** A Postgres unique violation (23505), e.g. a second insert racing the first one. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof QueryFailedError && (err.driverError as { code?: string } | undefined)?.code === '23505';
}
