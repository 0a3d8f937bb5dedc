/** The README's configuration reference names every key of the schema, so it cannot fall behind. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { rootSchema, siteSchema, tlsSchema } from '../../src/config/schema.js';

function keys(prefix: string, node: Record<string, unknown>): string[] {
  return Object.entries(node).flatMap(([name, value]) => {
    const child = value as Record<string, unknown>;
    return 'doc' in child && 'default' in child ? [`${prefix}${name}`] : keys(`${prefix}${name}.`, child);
  });
}

describe('README configuration reference', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const all = [...keys('', rootSchema), ...keys('sites[].', siteSchema), ...keys('sites[].tls.', tlsSchema)];

  it.each(all)('documents %s', (key) => {
    expect(readme).toContain(`\`${key}\``);
  });
});
