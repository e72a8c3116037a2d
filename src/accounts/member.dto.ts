import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsInt, Max, Min } from 'class-validator';
import { AccessLevel } from './actor.js';
import { Member } from './member.entity.js';
import { UserState } from './user.entity.js';

const ACCESS_LEVELS = [AccessLevel.GUEST, AccessLevel.REPORTER, AccessLevel.DEVELOPER, AccessLevel.MAINTAINER, AccessLevel.OWNER];
const ACCESS_LEVEL_DESCRIPTION = '10 guest, 20 reporter, 30 developer, 40 maintainer, 50 owner';

export class MemberCreateDto {
  @ApiProperty({ example: 2 })
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(2_147_483_647)
  user_id: number;

  @ApiProperty({ enum: ACCESS_LEVELS, description: ACCESS_LEVEL_DESCRIPTION, example: AccessLevel.MAINTAINER })
  @Type(() => Number)
  @IsIn(ACCESS_LEVELS, { message: `must be one of ${ACCESS_LEVELS.join(', ')}` })
  access_level: AccessLevel;
}

export class MemberUpdateDto {
  @ApiProperty({ enum: ACCESS_LEVELS, description: ACCESS_LEVEL_DESCRIPTION, example: AccessLevel.REPORTER })
  @Type(() => Number)
  @IsIn(ACCESS_LEVELS, { message: `must be one of ${ACCESS_LEVELS.join(', ')}` })
  access_level: AccessLevel;
}

/** GitLab's member: the user's fields plus its role in the group (`id` is the user's id). */
export class MemberResponseDto {
  @ApiProperty({ example: 2, description: 'The user id' })
  id: number;

  @ApiProperty({ example: 'alice' })
  username: string;

  @ApiProperty({ enum: UserState })
  state: UserState;

  @ApiProperty({ enum: ACCESS_LEVELS, description: ACCESS_LEVEL_DESCRIPTION })
  access_level: AccessLevel;

  @ApiProperty()
  created_at: Date;

  static from(member: Member): MemberResponseDto {
    return {
      id: member.userId,
      username: member.user!.username,
      state: member.user!.state,
      access_level: member.accessLevel,
      created_at: member.createdAt,
    };
  }
}
