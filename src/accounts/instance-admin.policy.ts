import { ForbiddenException } from '@nestjs/common';
import { Actor } from './actor.js';

/** Instance-wide actions (managing users, tokens of other users) are for instance administrators only. */
export function assertInstanceAdmin(actor: Actor): void {
  if (!actor.admin) throw new ForbiddenException({ message: '403 Forbidden' });
}
