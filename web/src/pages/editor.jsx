// The rule editor: fields, the Rhai script with inline errors and schema warnings, save (a new
// version, or a draft for review), the on/off switch, and the side panels: test, backtest,
// versions, review.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, can, describe, get } from "../api.js";
import { createEditor, setDoc } from "../rhai.js";
import { navigate } from "../main.jsx";
import { TestPanel } from "./test_panel.jsx";
import { ResultsPanel } from "./results_panel.jsx";
import { BacktestPanel, VersionsPanel, ReviewPanel } from "./panels.jsx";

const BLANK = {
  name: "",
  description: "",
  enabled: true,
  triggers: ["cart.updated"],
  priority: 0,
  script: '// `event` is the CloudEvent, `profile` the profile.\nif event.data.total > 100 {\n    push(#{ title: "Thanks!", body: "Enjoy free shipping." });\n}\n',
};

// The rule fields a save sends (what PUT /api/rules/{id} takes).
export function specOf(rule) {
  const spec = {
    name: rule.name,
    description: rule.description ?? "",
    enabled: rule.enabled,
    triggers: rule.triggers,
    priority: Number(rule.priority) || 0,
    script: rule.script,
  };
  for (const key of ["cooldown", "caps", "quiet_hours", "goal", "holdout"]) {
    if (rule[key] !== undefined && rule[key] !== null && rule[key] !== "") spec[key] = rule[key];
  }
  return spec;
}

// The warnings of a new rule's first save, for the page of the rule it navigates to.
let carried = { id: null, warnings: [] };
const takeCarried = (id) => {
  const warnings = carried.id === id ? carried.warnings : [];
  carried = { id: null, warnings: [] };
  return warnings;
};

// Schema warnings of a check or a save: where, what, and the field the schema probably means.
function Warnings({ warnings }) {
  return (
    <ul class="warnings">
      {warnings.map((w) => (
        <li data-testid="warning">
          {w.line ? `Line ${w.line}, column ${w.column}: ` : ""}
          {w.message}
        </li>
      ))}
    </ul>
  );
}

export function EditorPage({ session, id, template, newId }) {
  const isNew = !id;
  const mayEdit = can(session, "marketer");
  const [rule, setRule] = useState(null);
  const [ruleId, setRuleId] = useState(id ?? newId ?? "");
  const [version, setVersion] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [lintError, setLintError] = useState(null);
  const [lintWarnings, setLintWarnings] = useState([]);
  const [saveWarnings, setSaveWarnings] = useState(() => takeCarried(id));
  const [panel, setPanel] = useState("test");
  const [draft, setDraft] = useState(null);
  const ruleRef = useRef(null);
  ruleRef.current = rule;
  const idRef = useRef(ruleId);
  idRef.current = ruleId;
  const host = useRef(null);
  const view = useRef(null);

  const loadDraft = () => get(`/api/rules/${encodeURIComponent(id)}/draft`).then(setDraft).catch(() => setDraft(null));

  useEffect(() => {
    if (isNew) {
      if (!template) return setRule({ ...BLANK });
      get("/api/templates")
        .then(({ templates }) => {
          const found = templates.find((t) => t.id === template);
          setRule(found ? { ...BLANK, ...found.rule } : { ...BLANK });
          if (!newId && found) setRuleId(found.id);
        })
        .catch((e) => setError(describe(e)));
      return;
    }
    get(`/api/rules/${encodeURIComponent(id)}`)
      .then((r) => {
        setRule(r);
        setVersion(r.version);
      })
      .catch((e) => setError(describe(e)));
    loadDraft();
  }, [id, template]);

  useEffect(() => {
    if (!rule || view.current || !host.current) return;
    view.current = createEditor(host.current, {
      doc: rule.script,
      readOnly: !mayEdit,
      channels: session.channels,
      onChange: (script) => setRule((r) => ({ ...r, script })),
      onDiagnostics: ({ error, warnings }) => {
        setLintError(error);
        setLintWarnings(warnings);
      },
      check: async (script) => {
        const current = { ...ruleRef.current, script };
        try {
          const { data } = await api("POST", `/api/rules/${encodeURIComponent(idRef.current || "draft")}/check`, specOf(current));
          return { error: null, warnings: data?.warnings ?? [], fields: data?.fields };
        } catch (e) {
          if (e.status === 422 || e.status === 400) {
            return { error: { message: e.message, line: e.line, column: e.column, field: e.field }, warnings: e.warnings };
          }
          return { error: null, warnings: [] };
        }
      },
    });
    return () => {};
  }, [rule !== null]);

  useEffect(() => () => view.current?.destroy(), []);

  if (error && !rule) return <p class="error" role="alert">{error}</p>;
  if (!rule) return <p class="loading">Loading…</p>;

  const set = (field) => (e) => setRule({ ...rule, [field]: e.currentTarget.value });
  // A goal field emptied leaves the goal; a goal with no field left is no goal.
  const setGoal = (field) => (e) => {
    const goal = { ...(rule.goal ?? {}), [field]: e.currentTarget.value.trim() };
    if (!goal[field]) delete goal[field];
    setRule({ ...rule, goal: Object.keys(goal).length ? goal : undefined });
  };
  const setHoldout = (e) => {
    const text = e.currentTarget.value;
    setRule({ ...rule, holdout: text === "" ? undefined : Number(text) });
  };

  const save = async () => {
    setError(null);
    setNotice(null);
    setSaveWarnings([]);
    if (!ruleId) return setError("Give the rule an id (letters, digits, '-' or '_').");
    try {
      const body = { ...specOf(rule), ...(version ? { version } : {}) };
      const { status, data } = await api("PUT", `/api/rules/${encodeURIComponent(ruleId)}`, body);
      setSaveWarnings(data?.warnings ?? []);
      if (isNew) carried = { id: ruleId, warnings: data?.warnings ?? [] };
      if (status === 202) {
        setNotice("Saved as a draft: it goes live when a developer or admin approves it.");
        setDraft(data.draft);
        if (isNew) navigate(`/rules/${encodeURIComponent(ruleId)}`);
        return;
      }
      setVersion(data.version);
      setNotice(`Saved version ${data.version}.`);
      if (isNew) navigate(`/rules/${encodeURIComponent(ruleId)}`);
    } catch (e) {
      setError(describe(e));
    }
  };

  const toggle = async (e) => {
    const enabled = e.currentTarget.checked;
    setError(null);
    try {
      const { status, data } = await api("PATCH", `/api/rules/${encodeURIComponent(id)}`, { enabled, version });
      if (status === 202) {
        setNotice(`${enabled ? "Enabling" : "Disabling"} waits for review.`);
        setDraft(data.draft);
        return;
      }
      setRule({ ...rule, enabled: data.enabled });
      setVersion(data.version);
      setNotice(`${data.enabled ? "Enabled" : "Disabled"} (version ${data.version}).`);
    } catch (err) {
      setError(describe(err));
    }
  };

  const reload = (r) => {
    setRule(r);
    setVersion(r.version);
    if (view.current) setDoc(view.current, r.script);
  };

  return (
    <section class="editor-page">
      <div class="page-head">
        <h1>{isNew ? "New rule" : rule.name || id}</h1>
        {!isNew && (
          <label class="switch">
            <input type="checkbox" role="switch" checked={rule.enabled} disabled={!mayEdit} onChange={toggle} data-testid="enabled" />
            {rule.enabled ? "Enabled" : "Disabled"}
          </label>
        )}
        {version && <span class="muted">version {version}</span>}
        {mayEdit && (
          <button type="button" onClick={save} data-testid="save" disabled={!!lintError}>
            {session.review_required && session.role === "marketer" ? "Submit for review" : "Save"}
          </button>
        )}
      </div>
      {notice && <p class="notice" role="status" data-testid="notice">{notice}</p>}
      {error && <p class="error" role="alert" data-testid="error">{error}</p>}
      {saveWarnings.length > 0 && (
        <div class="warning" role="status" data-testid="save-warnings">
          Saved with {saveWarnings.length === 1 ? "a warning" : `${saveWarnings.length} warnings`}:
          <Warnings warnings={saveWarnings} />
        </div>
      )}
      {draft && (
        <p class="notice">
          A change by <b>{draft.author}</b> is waiting for review. <button type="button" class="link" onClick={() => setPanel("review")}>See it</button>
        </p>
      )}
      <div class="split">
        <div class="main-col">
          <div class="fields">
            {isNew && (
              <label>
                Id
                <input value={ruleId} onInput={(e) => setRuleId(e.currentTarget.value)} data-testid="rule-id" placeholder="abandoned-cart" />
              </label>
            )}
            <label>
              Name
              <input value={rule.name} onInput={set("name")} readOnly={!mayEdit} data-testid="rule-name" />
            </label>
            <label>
              Triggers (event types, comma-separated)
              <input
                value={rule.triggers.join(", ")}
                readOnly={!mayEdit}
                onChange={(e) => setRule({ ...rule, triggers: e.currentTarget.value.split(",").map((t) => t.trim()).filter(Boolean) })}
                data-testid="rule-triggers"
              />
            </label>
            <label>
              Priority
              <input type="number" value={rule.priority} onInput={set("priority")} readOnly={!mayEdit} />
            </label>
            <label>
              Cooldown
              <input value={rule.cooldown ?? ""} onInput={set("cooldown")} readOnly={!mayEdit} placeholder="e.g. 1d" />
            </label>
            <label>
              Goal: event type
              <input value={rule.goal?.event ?? ""} onInput={setGoal("event")} readOnly={!mayEdit} placeholder="e.g. order.placed" data-testid="goal-event" />
            </label>
            <label>
              Goal: within
              <input value={rule.goal?.within ?? ""} onInput={setGoal("within")} readOnly={!mayEdit} placeholder="e.g. 3d" data-testid="goal-within" />
            </label>
            <label>
              Goal: value
              <input value={rule.goal?.value ?? ""} onInput={setGoal("value")} readOnly={!mayEdit} placeholder="e.g. data.total" data-testid="goal-value" />
            </label>
            <label>
              Holdout (% of profiles)
              <input type="number" min="0" max="50" step="0.01" value={rule.holdout ?? ""} onInput={setHoldout} readOnly={!mayEdit} placeholder="e.g. 10" data-testid="holdout" />
            </label>
            <label class="wide">
              Description
              <textarea rows="2" value={rule.description} onInput={set("description")} readOnly={!mayEdit} />
            </label>
          </div>
          <div class="code" ref={host} data-testid="script" />
          <p class={lintError ? "error lint" : "ok lint"} role="status" aria-live="polite" data-testid="lint">
            {lintError
              ? `${lintError.line ? `Line ${lintError.line}, column ${lintError.column}: ` : ""}${lintError.message}`
              : "Compiles."}
          </p>
          {lintWarnings.length > 0 && (
            <div class="warning lint" data-testid="lint-warnings">
              <Warnings warnings={lintWarnings} />
            </div>
          )}
        </div>
        <aside class="side-col">
          <div role="tablist" class="tabs">
            {[["test", "Test"], ["backtest", "Backtest"], ["versions", "Versions"], ...(isNew ? [] : [["results", "Results"]]), ...(draft ? [["review", "Review"]] : [])].map(([key, label]) => (
              <button type="button" role="tab" aria-selected={panel === key} class={panel === key ? "active" : ""} onClick={() => setPanel(key)} data-testid={`tab-${key}`}>
                {label}
              </button>
            ))}
          </div>
          {panel === "test" && <TestPanel session={session} ruleId={ruleId} rule={rule} />}
          {panel === "backtest" && <BacktestPanel session={session} ruleId={ruleId} rule={rule} />}
          {panel === "versions" && !isNew && <VersionsPanel session={session} id={id} current={rule} currentVersion={version} onRestored={reload} onDraft={setDraft} />}
          {panel === "versions" && isNew && <p class="empty">Save the rule to start its history.</p>}
          {panel === "results" && !isNew && <ResultsPanel path={`/api/rules/${encodeURIComponent(id)}/results`} />}
          {panel === "review" && draft && (
            <ReviewPanel session={session} id={id} draft={draft} current={rule} onDone={(r) => { setDraft(null); if (r) reload(r); }} />
          )}
        </aside>
      </div>
    </section>
  );
}
