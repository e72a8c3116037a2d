import { Injectable, NotFoundException, PipeTransform } from '@nestjs/common';

/** Largest value of a Postgres `integer` id. */
export const RESOURCE_ID_MAX = 2_147_483_647;

/**
 * A numeric id from the path. Anything that cannot be an id (not digits, 0, beyond the `integer` range)
 * is a 404, the same as an id that does not exist, and never reaches a query.
 */
@Injectable()
export class ResourceIdPipe implements PipeTransform<string, number> {
  constructor(private readonly resource = 'Not found') {}

  transform(value: string): number {
    const id = /^[0-9]{1,10}$/.test(value) ? Number(value) : NaN;
    if (!(id >= 1 && id <= RESOURCE_ID_MAX)) throw new NotFoundException({ message: `404 ${this.resource}` });
    return id;
  }
}
