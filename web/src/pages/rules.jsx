// The rules list: status, triggers, last fired, fire and error counts, conversion rate and
// uplift (rules with a goal or holdout); changes waiting for review; and "New rule" from a
// template.
import { useEffect, useState } from "preact/hooks";
import { ago, can, describe, get } from "../api.js";
import { Link, navigate } from "../main.jsx";
import { pct, upliftShort } from "./results_panel.jsx";

function NewRule({ onClose }) {
  const [templates, setTemplates] = useState(null);
  const [template, setTemplate] = useState("");
  const [id, setId] = useState("");
  useEffect(() => {
    get("/api/templates").then((t) => setTemplates(t.templates)).catch(() => setTemplates([]));
  }, []);
  const start = (e) => {
    e.preventDefault();
    const query = new URLSearchParams();
    if (template) query.set("template", template);
    if (id) query.set("id", id);
    navigate(`/rules/new?${query}`);
  };
  return (
    <form class="card new-rule" onSubmit={start} aria-label="New rule" data-testid="new-rule">
      <h2>New rule</h2>
      <fieldset>
        <legend>Start from</legend>
        <label class="choice">
          <input type="radio" name="template" value="" checked={template === ""} onChange={() => setTemplate("")} />
          <span><b>Blank rule</b></span>
        </label>
        {(templates ?? []).map((t) => (
          <label class="choice">
            <input type="radio" name="template" value={t.id} checked={template === t.id} onChange={() => { setTemplate(t.id); if (!id) setId(t.id); }} data-testid={`template-${t.id}`} />
            <span>
              <b>{t.rule.name}</b>
              <small>{t.rule.description.split("\n").join(" ")}</small>
            </span>
          </label>
        ))}
      </fieldset>
      <label>
        Rule id
        <input value={id} onInput={(e) => setId(e.currentTarget.value)} placeholder="abandoned-cart" required data-testid="new-rule-id" pattern="[A-Za-z0-9_-]+" />
      </label>
      <div class="row">
        <button type="submit" data-testid="start-rule">Open in the editor</button>
        <button type="button" class="ghost" onClick={onClose}>Cancel</button>
      </div>
    </form>
  );
}

export function RulesPage({ session }) {
  const [rules, setRules] = useState(null);
  const [stats, setStats] = useState({});
  const [drafts, setDrafts] = useState([]);
  const [results, setResults] = useState({});
  const [error, setError] = useState(null);
  const [creating, setCreating] = useState(false);
  useEffect(() => {
    get("/api/rules").then(setRules).catch((e) => setError(describe(e)));
    get("/api/stats").then((s) => setStats(s.rules ?? {})).catch(() => {});
    get("/api/drafts").then((d) => setDrafts(d.drafts ?? [])).catch(() => {});
    get("/api/results").then((r) => setResults(r.rules ?? {})).catch((e) => setError(describe(e)));
  }, []);
  return (
    <section>
      <div class="page-head">
        <h1>Rules</h1>
        {can(session, "marketer") && !creating && (
          <button type="button" onClick={() => setCreating(true)} data-testid="new-rule-button">
            New rule
          </button>
        )}
      </div>
      {creating && <NewRule onClose={() => setCreating(false)} />}
      {error && <p class="error" role="alert">{error}</p>}
      {drafts.length > 0 && (
        <div class="card" data-testid="drafts">
          <h2>Waiting for review</h2>
          <ul>
            {drafts.map((d) => (
              <li>
                <Link href={`/rules/${encodeURIComponent(d.rule_id)}`}>{d.rule.name || d.rule_id}</Link> — {d.action} by {d.author}, {ago(d.created_at)}
              </li>
            ))}
          </ul>
        </div>
      )}
      {rules && rules.length === 0 && (
        <p class="empty">No rules yet. {can(session, "marketer") ? "Start one from a template with “New rule”." : "A marketer can create the first one."}</p>
      )}
      {rules && rules.length > 0 && (
        <table class="list" data-testid="rules-table">
          <thead>
            <tr>
              <th scope="col">Rule</th>
              <th scope="col">Status</th>
              <th scope="col">Triggers</th>
              <th scope="col">Last fired</th>
              <th scope="col" class="num">Fired</th>
              <th scope="col" class="num">Errors</th>
              <th scope="col" class="num" title="Treated profiles that reached the goal, all versions">Conversion</th>
              <th scope="col" title="Treatment's conversion rate minus the holdout's, 95% confidence">Uplift</th>
              <th scope="col">Version</th>
            </tr>
          </thead>
          <tbody>
            {rules.map((r) => {
              const s = stats[r.id] ?? {};
              const res = results[r.id];
              return (
                <tr data-testid={`rule-row-${r.id}`}>
                  <td>
                    <Link href={`/rules/${encodeURIComponent(r.id)}`}>{r.name || r.id}</Link>
                    <div class="muted small">{r.id}</div>
                  </td>
                  <td>
                    <span class={r.enabled ? "badge on" : "badge off"}>{r.enabled ? "enabled" : "disabled"}</span>
                  </td>
                  <td class="mono small">{r.triggers.join(", ")}</td>
                  <td>{ago(s.last_fired)}</td>
                  <td class="num">{s.fired ?? 0}</td>
                  <td class={s.errors ? "num error-text" : "num"} title={s.last_error ?? ""}>{s.errors ?? 0}</td>
                  <td class="num" data-testid={`rule-conversion-${r.id}`}>{res ? pct(res.treatment.rate) : "–"}</td>
                  <td class="small" data-testid={`rule-uplift-${r.id}`} title={res?.reason ?? ""}>
                    {res ? upliftShort(res) : <span class="muted">–</span>}
                  </td>
                  <td>
                    v{r.version} <span class="muted small">by {r.updated_by}</span>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {!rules && !error && <p class="loading">Loading…</p>}
    </section>
  );
}
