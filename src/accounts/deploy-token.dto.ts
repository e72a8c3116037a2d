import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayNotEmpty, ArrayUnique, IsArray, IsIn, IsISO8601, IsOptional, IsString, Length, Matches } from 'class-validator';
import { TokenScope } from './actor.js';
import { DeployToken } from './deploy-token.entity.js';
import { deployTokenExpired } from './token-validity.js';

/** Deploy tokens only pull. */
export const DEPLOY_TOKEN_SCOPES = [TokenScope.READ_VIRTUAL_REGISTRY];

export class DeployTokenCreateDto {
  @ApiProperty({ example: 'cluster pulls', maxLength: 255 })
  @IsString()
  @Length(1, 255)
  name: string;

  @ApiProperty({ enum: DEPLOY_TOKEN_SCOPES, isArray: true, example: DEPLOY_TOKEN_SCOPES })
  @IsArray()
  @ArrayNotEmpty()
  @ArrayUnique()
  @IsIn(DEPLOY_TOKEN_SCOPES, { each: true, message: `each value must be one of ${DEPLOY_TOKEN_SCOPES.join(', ')}` })
  scopes: TokenScope[];

  @ApiPropertyOptional({ example: '2030-12-31T00:00:00Z', description: 'ISO 8601 date-time' })
  @IsOptional()
  @IsISO8601({ strict: true })
  expires_at?: string;

  @ApiPropertyOptional({ example: 'cluster-puller', description: 'Login name (default `gitlab+deploy-token-<id>`)' })
  @IsOptional()
  @IsString()
  @Length(1, 255)
  @Matches(/^[A-Za-z0-9_.+-]+$/, { message: 'can contain only letters, digits, "_", "-", "+" and "."' })
  username?: string;
}

/** GitLab's deploy token fields; never the secret (only the creation answer carries `token`). */
export class DeployTokenResponseDto {
  @ApiProperty({ example: 1 })
  id: number;

  @ApiProperty({ example: 'cluster pulls' })
  name: string;

  @ApiProperty({ example: 'gitlab+deploy-token-1' })
  username: string;

  @ApiProperty({ nullable: true, type: Date })
  expires_at: Date | null;

  @ApiProperty({ enum: DEPLOY_TOKEN_SCOPES, isArray: true })
  scopes: TokenScope[];

  @ApiProperty()
  revoked: boolean;

  @ApiProperty()
  expired: boolean;

  static from(token: DeployToken): DeployTokenResponseDto {
    return {
      id: token.id,
      name: token.name,
      username: token.username,
      expires_at: token.expiresAt,
      scopes: token.scopes,
      revoked: token.revoked,
      expired: deployTokenExpired(token),
    };
  }
}

export class DeployTokenCreatedDto extends DeployTokenResponseDto {
  @ApiProperty({ description: 'The secret: shown once, in this answer only', example: 'cvrdt-...' })
  token: string;

  static withSecret(token: DeployToken, secret: string): DeployTokenCreatedDto {
    return { ...DeployTokenResponseDto.from(token), token: secret };
  }
}
