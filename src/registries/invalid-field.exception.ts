import { BadRequestException } from '@nestjs/common';

/**
 * A 400 naming the offending field, in the shape GitLab's API answers validation errors with
 * (`{"message": {"name": ["has already been taken"]}}`), plus Nest's `error` and `statusCode`.
 */
export class InvalidFieldException extends BadRequestException {
  constructor(field: string, message: string) {
    super({ message: { [field]: [message] }, error: 'Bad Request', statusCode: 400 });
  }
}
