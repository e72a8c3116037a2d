import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayNotEmpty, ArrayUnique, IsArray, IsIn, IsISO8601, IsOptional, IsString, Length, Matches } from 'class-validator';
import { TokenScope } from './actor.js';
import { PersonalAccessToken } from './personal-access-token.entity.js';
import { personalAccessTokenUsable } from './token-validity.js';

const SCOPES = Object.values(TokenScope);

export class PersonalAccessTokenCreateDto {
  @ApiProperty({ example: 'ci pulls', maxLength: 255 })
  @IsString()
  @Length(1, 255)
  name: string;

  @ApiProperty({ enum: TokenScope, isArray: true, example: [TokenScope.READ_VIRTUAL_REGISTRY] })
  @IsArray()
  @ArrayNotEmpty()
  @ArrayUnique()
  @IsIn(SCOPES, { each: true, message: `each value must be one of ${SCOPES.join(', ')}` })
  scopes: TokenScope[];

  @ApiPropertyOptional({ example: '2030-12-31', description: 'YYYY-MM-DD (UTC); the token stops working at the start of that day' })
  @IsOptional()
  @Matches(/^\d{4}-\d{2}-\d{2}$/, { message: 'must be a date like 2030-12-31' })
  @IsISO8601({ strict: true })
  expires_at?: string;
}

export class PersonalAccessTokenRotateDto {
  @ApiPropertyOptional({ example: '2030-12-31', description: "Expiry of the new token (default: the old token's)" })
  @IsOptional()
  @Matches(/^\d{4}-\d{2}-\d{2}$/, { message: 'must be a date like 2030-12-31' })
  @IsISO8601({ strict: true })
  expires_at?: string;
}

/** GitLab's personal access token fields; never the secret (only the creation answer carries `token`). */
export class PersonalAccessTokenResponseDto {
  @ApiProperty({ example: 4 })
  id: number;

  @ApiProperty({ example: 'ci pulls' })
  name: string;

  @ApiProperty()
  revoked: boolean;

  @ApiProperty()
  created_at: Date;

  @ApiProperty({ enum: TokenScope, isArray: true })
  scopes: TokenScope[];

  @ApiProperty({ example: 2 })
  user_id: number;

  @ApiProperty({ nullable: true, type: Date })
  last_used_at: Date | null;

  @ApiProperty({ description: 'Neither revoked nor expired' })
  active: boolean;

  @ApiProperty({ nullable: true, type: String, example: '2030-12-31' })
  expires_at: string | null;

  static from(token: PersonalAccessToken): PersonalAccessTokenResponseDto {
    return {
      id: token.id,
      name: token.name,
      revoked: token.revoked,
      created_at: token.createdAt,
      scopes: token.scopes,
      user_id: token.userId,
      last_used_at: token.lastUsedAt,
      active: personalAccessTokenUsable(token),
      expires_at: token.expiresAt,
    };
  }
}

export class PersonalAccessTokenCreatedDto extends PersonalAccessTokenResponseDto {
  @ApiProperty({ description: 'The secret: shown once, in this answer only', example: 'cvrpat-...' })
  token: string;

  static withSecret(token: PersonalAccessToken, secret: string): PersonalAccessTokenCreatedDto {
    return { ...PersonalAccessTokenResponseDto.from(token), token: secret };
  }
}
