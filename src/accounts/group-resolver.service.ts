import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { Group } from './group.entity.js';
import { groupNotFound } from './groups.service.js';

/**
 * Resolves the `:id` of `/groups/:id/-/...` routes: a numeric group id or the group's full path
 * (URL-encoded, any case), as GitLab accepts. An unknown group is a 404.
 */
@Injectable()
export class GroupResolver {
  constructor(@InjectRepository(Group) private readonly groups: Repository<Group>) {}

  async resolve(idOrPath: string | number): Promise<Group> {
    const ref = String(idOrPath).trim();
    let group: Group | null = null;
    if (/^\d{1,10}$/.test(ref)) {
      const id = Number(ref);
      if (id <= 2_147_483_647) group = await this.groups.findOneBy({ id });
    } else if (ref.length > 0 && ref.length <= 255) {
      group = await this.groups.createQueryBuilder('g').where('lower(g.path) = lower(:path)', { path: ref }).getOne();
    }
    if (!group) throw groupNotFound();
    return group;
  }
}
