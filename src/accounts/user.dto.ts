import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsBoolean, IsEmail, IsOptional, IsString, Length, Matches, MaxLength } from 'class-validator';
import { PageQueryDto } from '../common/pagination.js';
import { User, UserState } from './user.entity.js';

/** GitLab's username rule (minus the reserved names): letters, digits, `_`, `-`, `.`. */
export const USERNAME_PATTERN = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*(?<![.-])$/;

/** Form posts send booleans as strings. */
const toBoolean = ({ value }: { value: unknown }) => (value === 'true' ? true : value === 'false' ? false : value);

export class UserCreateDto {
  @ApiProperty({ example: 'alice', maxLength: 255 })
  @IsString()
  @Length(1, 255)
  @Matches(USERNAME_PATTERN, { message: 'can contain only letters, digits, "_", "-" and ".", and cannot end in "." or "-"' })
  username: string;

  @ApiPropertyOptional({ example: 'alice@example.com' })
  @IsOptional()
  @IsEmail()
  @MaxLength(255)
  email?: string;

  @ApiPropertyOptional({ default: false, description: 'Instance administrator' })
  @IsOptional()
  @Transform(toBoolean)
  @IsBoolean()
  admin?: boolean;
}

export class UserListQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ description: 'Exact username (case-insensitive)' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  username?: string;
}

export class UserResponseDto {
  @ApiProperty({ example: 2 })
  id: number;

  @ApiProperty({ example: 'alice' })
  username: string;

  @ApiProperty({ example: 'alice@example.com', nullable: true, type: String })
  email: string | null;

  @ApiProperty({ enum: UserState, example: UserState.ACTIVE })
  state: UserState;

  @ApiProperty({ example: false })
  is_admin: boolean;

  @ApiProperty()
  created_at: Date;

  static from(user: User): UserResponseDto {
    return {
      id: user.id,
      username: user.username,
      email: user.email,
      state: user.state,
      is_admin: user.admin,
      created_at: user.createdAt,
    };
  }
}
