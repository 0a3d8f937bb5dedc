/**
 * LazyChild (a pinhole's {port, dir} logger): no pino child is made until a
 * line is written with it, and every line written after `bind` carries the
 * bindings, whichever level the logger runs at.
 */
import { describe, expect, it, vi } from 'vitest';
import { createLogger, LazyChild } from '../../../src/observe/logger.js';

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger(level, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }).child({ sid: 's1' });
  return { log, lines, child: vi.spyOn(log, 'child') };
}

describe('LazyChild', () => {
  it('at warn: lines at debug and info make no child and write nothing; a warn makes it once, with the bindings', () => {
    const { log, lines, child } = capture('warn');
    const lazy = new LazyChild(log);
    lazy.bind({ port: 50001, dir: 'passive' });
    lazy.at('debug').debug('pinhole open');
    lazy.at('info').info({ upBytes: 1 }, 'transfer done');
    expect(child).not.toHaveBeenCalled();
    expect(lines).toEqual([]);
    lazy.log.warn('wrong peer');
    lazy.log.warn('again');
    expect(child).toHaveBeenCalledTimes(1);
    expect(lines.map((l) => [l.msg, l.sid, l.port, l.dir])).toEqual([
      ['wrong peer', 's1', 50001, 'passive'],
      ['again', 's1', 50001, 'passive'],
    ]);
  });

  it('at debug: every line carries the bindings; before bind, the parent’s own', () => {
    const { log, lines } = capture('debug');
    const lazy = new LazyChild(log);
    lazy.at('debug').debug('before');
    lazy.bind({ port: 50002, dir: 'active' });
    lazy.at('debug').debug('pinhole open');
    lazy.at('info').info('transfer done');
    expect(lines.map((l) => [l.msg, l.port, l.dir])).toEqual([
      ['before', undefined, undefined],
      ['pinhole open', 50002, 'active'],
      ['transfer done', 50002, 'active'],
    ]);
  });

  it('a second bind replaces the bindings (the child is made again)', () => {
    const { log, lines } = capture('info');
    const lazy = new LazyChild(log);
    lazy.bind({ port: 1 });
    lazy.at('info').info('one');
    lazy.bind({ port: 2 });
    lazy.at('info').info('two');
    expect(lines.map((l) => l.port)).toEqual([1, 2]);
  });
});
