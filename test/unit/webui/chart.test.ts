// The web console's metric charts (ui/src/lib/chart.ts): points from GET /v1/metrics grouped per
// host/VM, the axis top, the SVG coordinates, the values as shown.
import assert from 'node:assert/strict';
import { formatValue, niceMax, plot, seriesOf } from '../../../ui/src/lib/chart.js';

describe('web console: metric charts', () => {
  const pt = (time: number, value: number, h: string): { time: number; value: number; labels: Record<string, string> } => ({ time, value, labels: { HostUuid: h } });

  it('groups points into one series per label value, in time order, dropping non-numbers', () => {
    const s = seriesOf([pt(20, 2, 'b'), pt(10, 1, 'b'), pt(10, 5, 'a'), pt(30, NaN, 'a')], 'HostUuid');
    assert.deepEqual(s, [
      { key: 'a', points: [[10, 5]] },
      { key: 'b', points: [[10, 1], [20, 2]] },
    ]);
    assert.deepEqual(seriesOf([], 'HostUuid'), []);
  });

  it('rounds the axis top up to 1, 2 or 5 times a power of ten', () => {
    assert.equal(niceMax(0), 1);
    assert.equal(niceMax(-3), 1);
    assert.equal(niceMax(0.3), 0.5);
    assert.equal(niceMax(7), 10);
    assert.equal(niceMax(10), 10);
    assert.equal(niceMax(101), 200);
    assert.equal(niceMax(4_500_000), 5_000_000);
  });

  it('scales points into the box: time left to right, values bottom to top, clamped to the axis', () => {
    const g = plot([{ key: 'a', points: [[0, 0], [50, 50], [100, 100], [150, 120]] }], { width: 200, height: 100, t0: 0, t1: 200, yMax: 100 });
    assert.equal(g.yMax, 100);
    assert.equal(g.lines[0]!.points, '0,100 50,50 100,0 150,0');
    assert.deepEqual(g.lines[0]!.last, [150, 0]);
    assert.equal(g.lines[0]!.lastValue, 120, 'the legend shows the real value');
    // no fixed top: the largest value, rounded up; points outside the window are left out
    const h = plot([{ key: 'b', points: [[-10, 9], [10, 3]] }], { width: 100, height: 50, t0: 0, t1: 100 });
    assert.equal(h.yMax, 10);
    assert.equal(h.lines[0]!.points, '10,35');
    assert.equal(plot([], { width: 10, height: 10, t0: 0, t1: 0 }).yMax, 1);
  });

  it('formats percent, bytes and plain values', () => {
    assert.equal(formatValue(3.14159, '%'), '3.1%');
    assert.equal(formatValue(42.4, '%'), '42%');
    assert.equal(formatValue(512, 'B'), '512 B');
    assert.equal(formatValue(1536, 'B/s'), '1.5 KiB/s');
    assert.equal(formatValue(3 * 1024 ** 3, 'B'), '3.0 GiB');
    assert.equal(formatValue(7, ''), '7');
    assert.equal(formatValue(0.125, ''), '0.13');
  });
});
