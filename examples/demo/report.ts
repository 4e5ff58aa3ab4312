/**
 * The demo's HTML report: one self-contained file (uPlot's script and style inlined, the figures as
 * JSON), so it opens anywhere without a network. Each plot is a `<figure class="plot">`; the page
 * keeps its uPlot instances in `window.__plots` (what test/demo checks after rendering it).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** Times are seconds since the demo started. */
export interface ReportData {
  title: string;
  /** Key figures, in order, as label and value. */
  summary: [string, string][];
  far: { t: number[]; residentMiB: number[]; remoteMiB: number[]; faultsPerS: number[]; budgetMiB: number };
  farLatency: { t: number[]; ms: number[] };
  migration: {
    t: number[];
    movedMiB: number[];
    /** Each phase's start and end. */
    phases: { phase: string; from: number; to: number }[];
    /** The window the process ran nowhere (before post-copy resumed it on the target). */
    downtime: { from: number; to: number };
    from: string;
    to: string;
  };
  latency: { t: number[]; ms: number[] };
  /** How to look further (with --keep). */
  explore: string[];
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

export function writeReport(file: string, d: ReportData): void {
  const require = createRequire(import.meta.url);
  const dist = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const js = fs.readFileSync(path.join(dist, 'uPlot.iife.min.js'), 'utf8');
  const css = fs.readFileSync(path.join(dist, 'uPlot.min.css'), 'utf8');
  // JSON inside a script element: '<' escaped so that no "</script>" can end it early.
  const data = JSON.stringify(d).replace(/</g, '\\u003c');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(d.title)}</title>
<style>${css}
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td { padding: 2px 12px 2px 0; }
td:first-child { color: #555; } figure { margin: 2em 0; } figcaption { font-weight: 600; margin-bottom: .4em; }
pre { background: #f4f4f4; padding: .8em; }
</style></head><body>
<h1>${esc(d.title)}</h1>
<table>${d.summary.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('')}</table>
<figure class="plot" id="memory"><figcaption>Resident and remote memory of the workload (MiB)</figcaption></figure>
<figure class="plot" id="faults"><figcaption>Faults per second</figcaption></figure>
<figure class="plot" id="farlat"><figcaption>Request latency while its memory is paged (ms)</figcaption></figure>
<figure class="plot" id="migration"><figcaption>Migration timeline: bytes moved, phases, downtime (shaded)</figcaption></figure>
<figure class="plot" id="latency"><figcaption>Request latency through the migration (ms; the migration shaded)</figcaption></figure>
${d.explore.length ? `<h2>Explore</h2><pre>${d.explore.map(esc).join('\n')}</pre>` : ''}
<script>${js}</script>
<script>
const D = ${data};
window.__plots = [];
const W = Math.min(940, window.innerWidth - 40);
function bands(spans, color) {
  return { hooks: { drawClear: [(u) => {
    const c = u.ctx; c.save(); c.fillStyle = color;
    for (const s of spans) {
      const x0 = u.valToPos(s.from, 'x', true), x1 = u.valToPos(s.to, 'x', true);
      c.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
    }
    c.restore();
  }] } };
}
function plot(id, series, data, extra) {
  const el = document.getElementById(id);
  const u = new uPlot(Object.assign({ width: W, height: 260, scales: { x: { time: false } },
    axes: [{ label: 'seconds' }, {}], series: [{ label: 's' }].concat(series) }, extra || {}), data, el);
  window.__plots.push({ id, u, points: data[0].length });
}
plot('memory', [
  { label: 'resident', stroke: '#1f77b4', width: 2 },
  { label: 'on the memory nodes (both replicas)', stroke: '#d62728', width: 2 },
  { label: 'local budget', stroke: '#999', dash: [6, 4] },
], [D.far.t, D.far.residentMiB, D.far.remoteMiB, D.far.t.map(() => D.far.budgetMiB)]);
plot('faults', [{ label: 'faults/s', stroke: '#9467bd', width: 2 }], [D.far.t, D.far.faultsPerS]);
plot('farlat', [{ label: 'latency', stroke: '#2ca02c', paths: () => null, points: { show: true, size: 3 } }],
  [D.farLatency.t, D.farLatency.ms]);
const phaseColors = ['rgba(31,119,180,.10)', 'rgba(255,127,14,.12)', 'rgba(44,160,44,.12)', 'rgba(148,103,189,.12)'];
plot('migration', [{ label: 'MiB moved', stroke: '#ff7f0e', width: 2 }], [D.migration.t, D.migration.movedMiB],
  { plugins: [bands(D.migration.phases, phaseColors[0]), bands([D.migration.downtime], 'rgba(214,39,40,.35)')],
    hooks: { draw: [(u) => { const c = u.ctx; c.save(); c.fillStyle = '#444'; c.font = '11px sans-serif';
      for (const p of D.migration.phases) c.fillText(p.phase, u.valToPos(p.from, 'x', true) + 2, u.bbox.top + 12);
      c.restore(); }] } });
plot('latency', [{ label: 'latency', stroke: '#2ca02c', paths: () => null, points: { show: true, size: 3 } }],
  [D.latency.t, D.latency.ms],
  { plugins: [bands([{ from: D.migration.phases.length ? D.migration.phases[0].from : 0,
    to: D.migration.phases.length ? D.migration.phases[D.migration.phases.length - 1].to : 0 }], 'rgba(255,127,14,.12)'),
    bands([D.migration.downtime], 'rgba(214,39,40,.35)')] });
</script></body></html>
`;
  fs.writeFileSync(file, html);
}
