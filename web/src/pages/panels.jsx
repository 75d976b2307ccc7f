// The editor's other side panels: backtest (last 24 h / 7 d), version history with a diff and
// one-click restore, and the four-eyes review of a waiting change.
import { useEffect, useState } from "preact/hooks";
import { diffLines } from "diff";
import { api, can, describe, get } from "../api.js";
import { specOf } from "./editor.jsx";

// A rule as text for diffs: its settings, then its script.
export function ruleText(r) {
  if (!r) return "";
  const lines = [
    `name: ${r.name ?? ""}`,
    `enabled: ${r.enabled}`,
    `triggers: ${(r.triggers ?? []).join(", ")}`,
    `priority: ${r.priority ?? 0}`,
    `cooldown: ${r.cooldown ?? ""}`,
    `description: ${(r.description ?? "").replace(/\n/g, " ")}`,
    "",
  ];
  return `${lines.join("\n")}${r.script ?? ""}`;
}

export function Diff({ before, after }) {
  const parts = diffLines(before ?? "", after ?? "");
  const changed = parts.some((p) => p.added || p.removed);
  if (!changed) return <p class="muted">No difference.</p>;
  return (
    <pre class="mono diff" data-testid="diff">
      {parts.map((p) => (
        <span class={p.added ? "add" : p.removed ? "del" : "same"}>
          {p.value
            .replace(/\n$/, "")
            .split("\n")
            .map((line) => `${p.added ? "+" : p.removed ? "-" : " "} ${line}\n`)
            .join("")}
        </span>
      ))}
    </pre>
  );
}

// "12 of 40 decisions (30.0 %), value 1,234.5": how often the goal followed the rule's action.
function goalWords(arm) {
  const share = arm.exposures ? ` (${((100 * arm.conversions) / arm.exposures).toFixed(1)} %)` : "";
  const value = arm.value ? `, value ${arm.value.toLocaleString()}` : "";
  return `${arm.conversions} of ${arm.exposures} decisions${share}${value}`;
}

export function BacktestPanel({ session, ruleId, rule }) {
  const [report, setReport] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  if (!can(session, "marketer")) return <p class="muted">Viewers cannot run backtests.</p>;
  const run = async (last) => {
    setBusy(true);
    setError(null);
    try {
      const { data } = await api("POST", `/api/rules/${encodeURIComponent(ruleId || "draft")}/backtest`, { last, rule: specOf(rule) });
      setReport(data);
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
    }
  };
  const r = report?.report ?? report;
  return (
    <div class="panel" data-testid="backtest-panel">
      <p class="muted">Replays stored events through the rule as it is in the editor. Nothing is published.</p>
      <div class="row">
        <button type="button" disabled={busy} onClick={() => run("24h")}>Last 24 hours</button>
        <button type="button" disabled={busy} onClick={() => run("7d")}>Last 7 days</button>
      </div>
      {busy && <p class="loading">Replaying…</p>}
      {error && <p class="error" role="alert">{error}</p>}
      {r && (
        <table class="facts" data-testid="backtest-report">
          <tbody>
            <tr><th>Events scanned</th><td>{r.events_scanned}</td></tr>
            <tr><th>Events matched</th><td>{r.events_matched}</td></tr>
            <tr><th>Timers fired</th><td>{r.timers_fired}</td></tr>
            <tr><th>Actions</th><td>{r.actions_total} {Object.entries(r.actions ?? {}).map(([c, n]) => `· ${c} ${n}`).join(" ")}</td></tr>
            <tr><th>Profiles matched / actioned</th><td>{r.profiles_matched} / {r.profiles_actioned}</td></tr>
            <tr><th>Held by quiet hours</th><td>{r.held}</td></tr>
            <tr><th>Policy would suppress</th><td>{Object.keys(r.suppressed ?? {}).length ? Object.entries(r.suppressed).map(([k, n]) => `${k} ${n}`).join(" · ") : "nothing"}</td></tr>
            {Object.entries(r.goals ?? {}).map(([id, g]) => (
              <tr data-testid={`backtest-goal-${id}`}>
                <th>Goal followed ({id})</th>
                <td>
                  {goalWords(g.treatment)}
                  {g.control.exposures > 0 && <> · held out: {goalWords(g.control)}</>}
                  <div class="muted small">A correlation in past events, not the rule's effect: only a holdout measures that.</div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function VersionsPanel({ session, id, current, currentVersion, onRestored, onDraft }) {
  const [versions, setVersions] = useState(null);
  const [selected, setSelected] = useState(null);
  const [error, setError] = useState(null);
  const load = () =>
    get(`/api/rules/${encodeURIComponent(id)}/versions`)
      .then(setVersions)
      .catch((e) => setError(describe(e)));
  useEffect(() => {
    load();
  }, [id, currentVersion]);
  const restore = async (version) => {
    setError(null);
    try {
      const { status, data } = await api("POST", `/api/rules/${encodeURIComponent(id)}/restore`, { version });
      if (status === 202) return onDraft(data.draft);
      onRestored(data);
      setSelected(null);
    } catch (e) {
      setError(describe(e));
    }
  };
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!versions) return <p class="loading">Loading…</p>;
  return (
    <div class="panel" data-testid="versions-panel">
      <ol class="versions">
        {versions.map((v) => (
          <li class={selected?.version === v.version ? "selected" : ""}>
            <button type="button" class="link" onClick={() => setSelected(v)} data-testid={`version-${v.version}`}>
              v{v.version}
            </button>{" "}
            {v.deleted ? "deleted" : v.enabled ? "" : "disabled"} by {v.updated_by} · {new Date(v.updated_at).toLocaleString()}
            {v.version === currentVersion && <span class="badge">current</span>}
          </li>
        ))}
      </ol>
      {selected && (
        <div>
          <h3>v{selected.version} → editor</h3>
          <Diff before={ruleText(selected)} after={ruleText(current)} />
          {can(session, "marketer") && selected.version !== currentVersion && (
            <button type="button" onClick={() => restore(selected.version)} data-testid="restore">
              Restore v{selected.version}
            </button>
          )}
        </div>
      )}
    </div>
  );
}

export function ReviewPanel({ session, id, draft, current, onDone }) {
  const [error, setError] = useState(null);
  const mayApprove = can(session, "developer") && draft.author !== session.username;
  const act = async (approve) => {
    setError(null);
    try {
      const path = `/api/rules/${encodeURIComponent(id)}/draft`;
      const { data } = approve ? await api("POST", `${path}/approve`) : await api("DELETE", path);
      onDone(approve ? data : null);
    } catch (e) {
      setError(describe(e));
    }
  };
  return (
    <div class="panel" data-testid="review-panel">
      <p>
        <b>{draft.author}</b> proposed <code>{draft.action}</code> on {new Date(draft.created_at).toLocaleString()}, based on v{draft.base_version ?? "—"}.
        {draft.rule.enabled !== current.enabled && <> It {draft.rule.enabled ? "enables" : "disables"} the rule.</>}
      </p>
      <Diff before={ruleText(current)} after={ruleText(draft.rule)} />
      {error && <p class="error" role="alert">{error}</p>}
      <div class="row">
        {mayApprove && <button type="button" onClick={() => act(true)} data-testid="approve">Approve and publish</button>}
        {(mayApprove || draft.author === session.username) && (
          <button type="button" class="ghost" onClick={() => act(false)}>
            {draft.author === session.username ? "Withdraw" : "Reject"}
          </button>
        )}
        {!mayApprove && draft.author !== session.username && <p class="muted">A developer or admin other than the author approves changes.</p>}
      </div>
    </div>
  );
}
