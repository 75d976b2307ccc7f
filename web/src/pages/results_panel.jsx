// The Results tab of a rule: did it work? The funnel (triggered → sent → delivered → converted)
// as bars, the conversion rate of each group over time as a chart, and the uplift in words, for
// all versions together or one version. The chart is a hand-drawn SVG: two lines over at most
// `results_retention_days` points are smaller and simpler than a chart library's bundle.
import { useEffect, useState } from "preact/hooks";
import { describe, get } from "../api.js";

export const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)} %`);
const pp = (x) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} pp`;

// "+2.1 pp (+0.4 to +3.8 pp)" for a table cell, or why not (the whole reason on hover).
export function upliftShort(report) {
  if (!report.uplift) return <span class="muted">{report.control.profiles === 0 ? "no control group" : "not enough data yet"}</span>;
  const { value, ci_low, ci_high } = report.uplift;
  return `${pp(value)} (${pp(ci_low)} to ${pp(ci_high)})`;
}

// "+2.1 pp (+0.4 to +3.8), 95% confidence", or why there is no uplift yet.
export function upliftWords(report) {
  if (!report.uplift) return report.reason ?? "No uplift yet.";
  const { value, ci_low, ci_high } = report.uplift;
  return `${pp(value)} (${pp(ci_low)} to ${pp(ci_high)}), 95% confidence`;
}

function Funnel({ report }) {
  const steps = [
    ["Triggered", report.triggered],
    ["Sent", report.treatment.exposures],
    // Only where nudge delivers the actions itself (webhooks, e-mails).
    ...(report.delivered > 0 ? [["Delivered (actions)", report.delivered]] : []),
    ["Converted", report.treatment.conversions],
    ["Held out", report.control.exposures],
    ["Held out, converted", report.control.conversions],
  ];
  const top = Math.max(1, ...steps.map(([, n]) => n));
  return (
    <div class="funnel" data-testid="results-funnel">
      {steps.map(([label, n]) => (
        <div class="funnel-step">
          <span class="funnel-label">{label}</span>
          <span class="funnel-bar" style={{ width: `${(100 * n) / top}%` }} />
          <span class="funnel-count">{n}</span>
        </div>
      ))}
    </div>
  );
}

// Cumulative conversion rate of each group, day by day.
function Chart({ days }) {
  if (!days.length) return <p class="muted" data-testid="results-chart">No days counted yet.</p>;
  const series = ["treatment", "control"].map((group) => {
    let profiles = 0;
    let converted = 0;
    return days.map((d) => {
      profiles += d[group].profiles;
      converted += d[group].converted;
      return profiles ? converted / profiles : 0;
    });
  });
  const top = Math.max(0.01, ...series.flat());
  const [width, height] = [300, 120];
  const x = (i) => (days.length === 1 ? width / 2 : (i * width) / (days.length - 1));
  const y = (rate) => height - (rate / top) * (height - 10);
  const line = (values) => values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return (
    <figure data-testid="results-chart">
      <svg viewBox={`-4 0 ${width + 8} ${height + 4}`} role="img" aria-label="Conversion rate per day, treatment and control">
        <polyline class="series-treatment" fill="none" points={line(series[0])} />
        <polyline class="series-control" fill="none" points={line(series[1])} />
        {series.map((values, s) => values.map((v, i) => <circle class={s ? "series-control" : "series-treatment"} cx={x(i)} cy={y(v)} r="2.5" />))}
      </svg>
      <figcaption>
        Conversion rate, cumulative: <span class="series-treatment">treatment</span> ·{" "}
        <span class="series-control">control</span> · {days[0].day} to {days[days.length - 1].day} · top {pct(top)}
      </figcaption>
    </figure>
  );
}

// `path`: the rule's (or a plugin's) results address; `noun`: what it is, for the words.
export function ResultsPanel({ path, noun = "rule" }) {
  const [results, setResults] = useState(null);
  const [error, setError] = useState(null);
  const [which, setWhich] = useState("overall");
  useEffect(() => {
    let live = true;
    const load = () =>
      get(path)
        .then((r) => live && setResults(r))
        .catch((e) => live && setError(describe(e)));
    load();
    // Counts land with each checkpoint: follow them while the tab is open.
    const timer = setInterval(load, 2000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [path]);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!results) return <p class="loading">Loading…</p>;
  const report = which === "overall" ? results.overall : results.versions.find((v) => String(v.version) === which) ?? results.overall;
  return (
    <div class="panel" data-testid="results-panel">
      {!results.goal && <p class="muted">This {noun} has no goal: set one (and a holdout) to measure what it brings.</p>}
      {results.goal && (
        <p class="muted">
          Goal: <code>{results.goal.event}</code> within {results.goal.within}
          {results.goal.value ? <> (value: <code>{results.goal.value}</code>)</> : null} · holdout {results.holdout ?? 0} % · last touch
        </p>
      )}
      <label>
        Version{" "}
        <select value={which} onChange={(e) => setWhich(e.currentTarget.value)} data-testid="results-version">
          <option value="overall">All versions</option>
          {results.versions.map((v) => <option value={String(v.version)}>v{v.version}</option>)}
        </select>
      </label>
      <Funnel report={report} />
      <table class="facts">
        <tbody>
          <tr><th>Treatment</th><td>{report.treatment.converted} of {report.treatment.profiles} profiles converted ({pct(report.treatment.rate)}), value {report.treatment.value}</td></tr>
          <tr><th>Control</th><td>{report.control.converted} of {report.control.profiles} profiles converted ({pct(report.control.rate)}), value {report.control.value}</td></tr>
          <tr><th>Uplift</th><td data-testid="results-uplift">{upliftWords(report)}</td></tr>
        </tbody>
      </table>
      <Chart days={report.days} />
    </div>
  );
}
