import { ApiProperty } from '@nestjs/swagger';
import { IsString, Length, Matches } from 'class-validator';
import { Group } from './group.entity.js';

/** GitLab's path rule: letters, digits, `_`, `-`, `.`; not starting with `-`, not ending in `.`, `.git` or `.atom`. */
export const GROUP_PATH_PATTERN = /^(?!.*\.(?:git|atom)$)[A-Za-z0-9_.][A-Za-z0-9_.-]*(?<!\.)$/;

export class GroupCreateDto {
  @ApiProperty({ description: 'Display name', example: 'Platform team', maxLength: 255 })
  @IsString()
  @Length(1, 255)
  name: string;

  @ApiProperty({ description: 'URL-safe identifier, unique regardless of case', example: 'platform', maxLength: 255 })
  @IsString()
  @Length(1, 255)
  @Matches(GROUP_PATH_PATTERN, { message: 'can contain only letters, digits, "_", "-" and ".", cannot start with "-" or end in "." or ".git"' })
  path: string;
}

export class GroupResponseDto {
  @ApiProperty({ example: 1 })
  id: number;

  @ApiProperty({ example: 'Platform team' })
  name: string;

  @ApiProperty({ example: 'platform' })
  path: string;

  @ApiProperty({ example: 'Platform team', description: 'Same as name (groups are not nested)' })
  full_name: string;

  @ApiProperty({ example: 'platform', description: 'Same as path (groups are not nested)' })
  full_path: string;

  @ApiProperty()
  created_at: Date;

  @ApiProperty()
  updated_at: Date;

  static from(group: Group): GroupResponseDto {
    return {
      id: group.id,
      name: group.name,
      path: group.path,
      full_name: group.name,
      full_path: group.path,
      created_at: group.createdAt,
      updated_at: group.updatedAt,
    };
  }
}
