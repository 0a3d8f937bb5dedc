/**
 * The container image definition, read line by line (no image is built
 * here): multi-stage, non-root, nothing but production dependencies in the
 * final stage, EXPOSE matching config/ftp-alg.json, a health check that exists.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../../src/config/load.js';

const ROOT = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, ROOT), 'utf8');

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** Instructions with continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text.replace(/\\\n\s*/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

/** Stages: each starts at a FROM. */
function stages(all: Instruction[]): Instruction[][] {
  const result: Instruction[][] = [];
  for (const i of all) {
    if (i.keyword === 'FROM') result.push([i]);
    else result.at(-1)?.push(i);
  }
  return result;
}

const all = instructions(read('deploy/container/Containerfile'));
const byStage = stages(all);
const final = byStage.at(-1) ?? [];
const config = loadConfigFile(new URL('config/ftp-alg.json', ROOT).pathname);

describe('deploy/container/Containerfile', () => {
  it('is multi-stage, starting with a build stage on node:24-bookworm-slim (Node 24 LTS, the target runtime)', () => {
    expect(byStage.length).toBeGreaterThanOrEqual(2);
    expect(byStage[0]?.[0]?.args).toMatch(/ AS build$/i);
    const nodeImage = all.find((i) => i.keyword === 'ARG' && i.args.startsWith('NODE_IMAGE='));
    expect(nodeImage?.args).toBe('NODE_IMAGE=node:24-bookworm-slim');
  });

  it('builds with npm ci and the build script in the build stage', () => {
    const runs = (byStage[0] ?? []).filter((i) => i.keyword === 'RUN').map((i) => i.args);
    expect(runs).toContain('npm ci --no-audit --no-fund');
    expect(runs).toContain('npm run build');
  });

  it('runs as a non-root numeric user in the final stage', () => {
    const users = final.filter((i) => i.keyword === 'USER').map((i) => i.args);
    expect(users).toHaveLength(1);
    const [user = '', group = ''] = (users[0] ?? '').split(':');
    expect(user).toMatch(/^\d+$/);
    expect(Number(user)).toBeGreaterThan(0);
    expect(group === '' || Number(group) > 0).toBe(true);
  });

  it('installs no dependencies in the final stage, and only production ones anywhere but the build stage', () => {
    expect(final.filter((i) => i.keyword === 'RUN')).toEqual([]);
    for (const stage of byStage.slice(1)) {
      for (const run of stage.filter((i) => i.keyword === 'RUN')) {
        if (/\bnpm (ci|install|i)\b/.test(run.args)) expect(run.args).toMatch(/--omit=dev/);
      }
    }
  });

  it('copies into the final stage only dist, production node_modules, package.json and the config', () => {
    const copies = final.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    expect(copies).toEqual([
      '--from=deps /src/node_modules ./node_modules',
      '--from=build /src/dist ./dist',
      'package.json ./',
      'config/ftp-alg.json /etc/ftp-alg/ftp-alg.json',
    ]);
    const depsStage = byStage.find((s) => / AS deps$/i.test(s[0]?.args ?? ''));
    expect(depsStage?.some((i) => i.keyword === 'RUN' && /npm ci --omit=dev/.test(i.args))).toBe(true);
  });

  it("documents config/ftp-alg.json's ports with EXPOSE", () => {
    const exposed = final.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    const expected = config.sites.flatMap((s) => [
      `${s.listen.port}/tcp`,
      `${s.passivePorts.min}-${s.passivePorts.max}/tcp`,
      `${s.activePorts.min}-${s.activePorts.max}/tcp`,
    ]);
    expect(exposed).toEqual(expected);
  });

  it('checks health with the healthcheck script the build produces, and runs the CLI on the mounted config', () => {
    const health = final.find((i) => i.keyword === 'HEALTHCHECK')?.args ?? '';
    expect(health).toContain('CMD ["node", "/opt/ftp-alg/dist/deploy/healthcheck.js", "/etc/ftp-alg/ftp-alg.json", "/healthz"]');
    expect(existsSync(new URL('src/deploy/healthcheck.ts', ROOT))).toBe(true);
    expect(final.find((i) => i.keyword === 'ENTRYPOINT')?.args).toBe('["node", "/opt/ftp-alg/dist/cli.js"]');
    expect(final.find((i) => i.keyword === 'CMD')?.args).toBe('["--config", "/etc/ftp-alg/ftp-alg.json"]');
  });
});

describe('build context ignore files', () => {
  it('Containerfile.dockerignore (read by BuildKit) is the same as .dockerignore', () => {
    expect(read('deploy/container/Containerfile.dockerignore')).toBe(read('deploy/container/.dockerignore'));
  });

  it('whitelists exactly what the stages copy from the context', () => {
    const lines = read('deploy/container/.dockerignore')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(lines[0]).toBe('*');
    const contextCopies = all
      .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from='))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    for (const source of contextCopies) expect(lines, source).toContain(`!${source}`);
  });
});
