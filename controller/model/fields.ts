// Field schemas shared by the resource kinds (ZStack API names; see DESIGN.md "Conventions").
import { Type, Uuid, Ipv4 } from '../../shared/protocol/schema.js';

export { Uuid, Ipv4 };
export const Name = () => Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]+$', description: 'Display name (may repeat)' });
export const Description = () => Type.String({ maxLength: 2048 });
export const Tags = () => Type.Array(Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\x00-\\x1f,]+$' }), { maxItems: 64, uniqueItems: true });
export const Bytes = (opts: Record<string, unknown> = {}) => Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, ...opts });
export const Port = () => Type.Integer({ minimum: 1, maximum: 65535 });
export const Url = () => Type.String({ minLength: 1, maxLength: 2048, pattern: '^[^\\x00-\\x1f]+$' });
export const Enum = <T extends string>(values: readonly T[], opts: Record<string, unknown> = {}) => Type.Union(values.map((v) => Type.Literal(v)), opts);
export const Hostname = (opts: Record<string, unknown> = {}) => Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$', ...opts });

/** name, description, tags: every create body has them. */
export const baseCreate = () => ({
  name: Name(),
  description: Type.Optional(Description()),
  tags: Type.Optional(Tags()),
});

export const baseUpdate = () => ({
  name: Type.Optional(Name()),
  description: Type.Optional(Description()),
  tags: Type.Optional(Tags()),
});

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
