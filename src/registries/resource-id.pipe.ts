import { BadRequestException, NotFoundException, PipeTransform } from '@nestjs/common';

const MAX_INT4 = 2_147_483_647;

/**
 * A database id from the path: digits only (400 otherwise, naming the parameter), and a value that
 * cannot exist (0, or beyond the integer column's range) is a 404 rather than a database error.
 * Use an instance: `@Param('id', new ResourceIdPipe())`.
 */
export class ResourceIdPipe implements PipeTransform<string, number> {
  constructor(private readonly name = 'id') {}

  transform(value: string): number {
    if (typeof value !== 'string' || !/^\d{1,20}$/.test(value)) {
      throw new BadRequestException({ message: { [this.name]: ['is invalid'] }, error: 'Bad Request', statusCode: 400 });
    }
    const id = Number(value);
    if (id < 1 || id > MAX_INT4) throw new NotFoundException('404 Not Found');
    return id;
  }
}
