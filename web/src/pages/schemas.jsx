// Schemas: the tracking plan. Each event type's `data` has a JSON Schema (draft 2020-12), a mode
// (off: not checked; warn: processed and reported; block: sent to the dead letters) and the
// compatibility each new version keeps with the one before. A schema is drafted from the
// type's recent events, edited and saved (which says how many recent events would fail it);
// next to it, the type's violations report and its versions. Everyone reads; developers and
// admins write (the server refuses the others, and the page shows its answer).
import { useEffect, useRef, useState } from "preact/hooks";
import { ago, api, can, describe, get } from "../api.js";
import { Link, navigate } from "../main.jsx";
import { ViolationList, ViolationReport } from "./schema_report.jsx";

const MODES = [
  ["off", "off: not checked"],
  ["warn", "warn: processed, violations reported"],
  ["block", "block: violating events go to the dead letters"],
];
const COMPATIBILITIES = [
  ["backward", "backward: the new version accepts the previous one's events"],
  ["forward", "forward: the previous version accepts the new one's events"],
  ["full", "full: both"],
  ["none", "none: any change"],
];
const UNPLANNED = { allow: "processed as usual", warn: "processed and reported as unplanned", block: "sent to the dead letters" };
const STARTER = '{\n  "$schema": "https://json-schema.org/draft/2020-12/schema",\n  "type": "object",\n  "properties": {}\n}';
const BLANK = { type: "", text: STARTER, mode: "warn", compatibility: "backward", version: null };

// How often the violations report is fetched again while the page is open.
const REPORT_REFRESH_MS = 5_000;

const enc = encodeURIComponent;

const formOf = (s) => ({
  type: s.type,
  text: JSON.stringify(s.schema, null, 2),
  mode: s.mode,
  compatibility: s.compatibility,
  version: s.version,
});

// An answer's error as shown: the message, every reason a new version is incompatible, and
// whether another version landed since this one was loaded.
const errorOf = (e) => ({
  message: describe(e),
  reasons: e.reasons ?? [],
  stale: e.status === 409 && e.field === "version",
});

function ErrorBox({ error, onReload }) {
  return (
    <div class="error" role="alert" id="schema-error" data-testid="schema-error">
      {error.message}
      {error.reasons?.length > 0 && (
        <ul id="schema-reasons" data-testid="schema-reasons">
          {error.reasons.map((r) => <li>{r}</li>)}
        </ul>
      )}
      {error.stale && (
        <p>
          <button type="button" class="link" onClick={onReload}>Load the newest version</button> (your edits are lost)
        </p>
      )}
    </div>
  );
}

// What a save says of the type's recent events: how many fail the saved schema, and why.
function RecentEvents({ recent }) {
  if (!recent.checked) {
    return <p class="muted" id="schema-recent" data-testid="schema-recent">No recent events of this type to check the schema against.</p>;
  }
  return (
    <div class={recent.failing ? "warning" : "notice"} role="status" id="schema-recent" data-testid="schema-recent">
      {recent.failing} of {recent.checked} recent events fail this schema{recent.failing ? ":" : "."}
      {recent.samples?.length > 0 && (
        <ul>
          {recent.samples.map((s) => (
            <li>
              event <code>{s.event_id}</code>
              <ViolationList violations={s.violations ?? []} />
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function Versions({ versions, onLoad }) {
  if (versions.length === 0) return <p class="muted small">Not saved yet.</p>;
  return (
    <ul class="versions" id="schema-versions" data-testid="schema-versions">
      {versions.map((v) => (
        <li data-testid={`schema-version-${v.version}`}>
          v{v.version}{" "}
          {v.deleted ? <span class="badge off">deleted</span> : <><span class="badge">{v.mode}</span> {v.compatibility}</>}
          {" · "}
          <span class="small" title={v.updated_at}>{ago(v.updated_at)} by {v.updated_by}</span>{" "}
          {!v.deleted && v.schema && <button type="button" class="link" onClick={() => onLoad(v)}>Load into editor</button>}
        </li>
      ))}
    </ul>
  );
}

function SchemaTable({ schemas, report, selected }) {
  return (
    <table class="list" data-testid="schemas-table">
      <thead>
        <tr>
          <th scope="col">Event type</th><th scope="col">Version</th><th scope="col">Mode</th><th scope="col">Compatibility</th>
          <th scope="col">Warned</th><th scope="col">Blocked</th><th scope="col">Changed</th>
        </tr>
      </thead>
      <tbody>
        {schemas.map((s) => {
          const r = report.find((t) => t.type === s.type);
          return (
            <tr data-testid={`schema-row-${s.type}`} class={selected === s.type ? "selected" : ""}>
              <td><Link href={`/schemas/${enc(s.type)}`}>{s.type}</Link></td>
              <td class="num">v{s.version}</td>
              <td><span class={`badge ${s.mode === "block" ? "off" : s.mode === "off" ? "idle" : ""}`}>{s.mode}</span></td>
              <td>{s.compatibility}</td>
              <td class="num">{r?.warned ?? 0}</td>
              <td class="num">{r?.blocked ?? 0}</td>
              <td class="small" title={s.updated_at}>{ago(s.updated_at)} by {s.updated_by}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

// Types seen with violations (`unplanned` ones among them) that have no schema.
function Unplanned({ types }) {
  if (types.length === 0) return null;
  return (
    <>
      <h2>Event types without a schema</h2>
      <table class="list" data-testid="unplanned-table">
        <thead>
          <tr><th scope="col">Event type</th><th scope="col">Warned</th><th scope="col">Blocked</th><th scope="col"></th></tr>
        </thead>
        <tbody>
          {types.map((t) => (
            <tr data-testid={`unplanned-${t.type}`}>
              <td class="mono">{t.type}</td>
              <td class="num">{t.warned}</td>
              <td class="num">{t.blocked}</td>
              <td><Link href={`/schemas/${enc(t.type)}`}>Plan it</Link></td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function SchemasPage({ session, type }) {
  const mayWrite = can(session, "developer");
  const [list, setList] = useState(null);
  const [report, setReport] = useState([]);
  const [form, setForm] = useState(null);
  const [versions, setVersions] = useState([]);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [drafted, setDrafted] = useState(null);
  const [recent, setRecent] = useState(null);
  const [busy, setBusy] = useState(false);
  // The type the form holds (loaded or just saved), so the URL following it loads nothing.
  const shown = useRef(null);

  const loadList = () => get("/api/schemas").then(setList).catch((e) => setError(errorOf(e)));
  const loadReport = () =>
    get("/api/schema-violations").then((r) => setReport(r.types)).catch((e) => setError(errorOf(e)));
  // A type not saved yet has no versions (404); anything else is shown.
  const loadVersions = (t) =>
    get(`/api/schemas/${enc(t)}/versions`)
      .then((v) => setVersions(v.versions))
      .catch((e) => {
        setVersions([]);
        if (e.status !== 404) setError(errorOf(e));
      });
  useEffect(() => {
    loadList();
    loadReport();
    const timer = setInterval(loadReport, REPORT_REFRESH_MS);
    return () => clearInterval(timer);
  }, []);

  const clearMessages = () => {
    setError(null);
    setNotice(null);
    setDrafted(null);
    setRecent(null);
  };

  const open = async (t) => {
    shown.current = t;
    clearMessages();
    setVersions([]);
    try {
      const s = await get(`/api/schemas/${enc(t)}`);
      if (shown.current === t) setForm(formOf(s));
    } catch (e) {
      if (shown.current !== t) return;
      if (e.status === 404) setForm({ ...BLANK, type: t });
      else {
        setForm(null);
        setError(errorOf(e));
      }
    }
    loadVersions(t);
  };
  useEffect(() => {
    if (type && type !== shown.current) open(type);
  }, [type]);

  const leave = (next) => {
    shown.current = null;
    setVersions([]);
    setForm(next);
    if (type) navigate("/schemas");
  };
  const newSchema = () => {
    clearMessages();
    leave({ ...BLANK });
  };

  const infer = async () => {
    const t = form.type.trim();
    setError(null);
    setDrafted(null);
    if (!t) return setError({ message: "Name the event type first (e.g. cart.updated)." });
    setBusy(true);
    try {
      const { data } = await api("POST", `/api/schemas/${enc(t)}/infer`);
      if (!data?.events) setDrafted("No stored events of this type yet.");
      else {
        setForm((f) => ({ ...f, text: JSON.stringify(data.schema, null, 2) }));
        setDrafted(`Drafted from ${data.events} event${data.events === 1 ? "" : "s"}: review it, then save.`);
      }
    } catch (e) {
      setError(errorOf(e));
    } finally {
      setBusy(false);
    }
  };

  const save = async (e) => {
    e.preventDefault();
    clearMessages();
    const t = form.type.trim();
    let schema;
    try {
      schema = JSON.parse(form.text);
    } catch (err) {
      return setError({ message: `The schema is not JSON: ${err.message}` });
    }
    const body = { schema, mode: form.mode, compatibility: form.compatibility };
    if (form.version) body.version = form.version;
    setBusy(true);
    try {
      const { data } = await api("PUT", `/api/schemas/${enc(t)}`, body);
      const saved = data.type ?? t;
      shown.current = saved;
      setForm(formOf({ ...data, type: saved }));
      setNotice(`Saved ${saved} as version ${data.version}.`);
      setRecent(data.recent_events ?? null);
      if (type !== saved) navigate(`/schemas/${enc(saved)}`);
      loadList();
      loadVersions(saved);
    } catch (err) {
      setError(errorOf(err));
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!confirm(`Delete the schema of ${form.type}? Its events are no longer checked against it; its versions stay.`)) return;
    clearMessages();
    try {
      await api("DELETE", `/api/schemas/${enc(form.type)}`);
      setNotice(`Deleted the schema of ${form.type}.`);
      leave(null);
      loadList();
    } catch (e) {
      setError(errorOf(e));
    }
  };

  const loadVersion = (v) => {
    setForm((f) => ({ ...f, text: JSON.stringify(v.schema, null, 2), mode: v.mode ?? f.mode, compatibility: v.compatibility ?? f.compatibility }));
    setNotice(`Loaded version ${v.version} into the editor: save to make it the newest.`);
  };

  const field = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });
  const planned = new Set((list?.schemas ?? []).map((s) => s.type));
  const selected = form?.type.trim();
  const messages = (
    <>
      {drafted && <p class="notice" role="status" id="schema-drafted" data-testid="schema-drafted">{drafted}</p>}
      {notice && <p class="notice" role="status" id="schema-saved" data-testid="schema-saved">{notice}</p>}
      {recent && <RecentEvents recent={recent} />}
      {error && <ErrorBox error={error} onReload={() => open(form.type.trim())} />}
    </>
  );

  return (
    <section>
      <div class="page-head">
        <h1>Schemas</h1>
        <button type="button" onClick={newSchema} id="schema-new" data-testid="schema-new">New schema</button>
      </div>
      <p class="muted">
        The tracking plan: a JSON Schema of each event type's <code>data</code>. Events are checked as they arrive;
        rules reading a field their triggers' schemas lack get a warning in the editor.
        {list && (
          <>
            {" "}Events of a type without a schema are <b data-testid="unplanned-policy">{UNPLANNED[list.unplanned_events] ?? list.unplanned_events}</b>;
            a rule reading an unknown field is {list.strict_schemas ? <b>refused</b> : <b>saved with a warning</b>}.
          </>
        )}
      </p>
      {!mayWrite && <p class="muted small">Changing schemas takes a developer or an admin: nudge refuses the changes of other roles.</p>}
      {list?.schemas?.length === 0 && <p class="empty" data-testid="schemas-empty">No schemas yet: draft one from the recent events of a type.</p>}
      {list?.schemas?.length > 0 && <SchemaTable schemas={list.schemas} report={report} selected={selected} />}
      <Unplanned types={report.filter((t) => !planned.has(t.type))} />
      {!form && messages}
      {form && (
        <div class="split" style="margin-top: 14px">
          <form class="panel" onSubmit={save} aria-label="Event schema">
            <h2>{form.version ? `${form.type} · version ${form.version}` : "New schema"}</h2>
            <label>
              Event type
              <input id="schema-type" data-testid="schema-type" value={form.type} onInput={field("type")} required readOnly={!!form.version} placeholder="cart.updated" />
            </label>
            <div class="fields">
              <label>
                Mode
                <select id="schema-mode" data-testid="schema-mode" value={form.mode} onChange={field("mode")}>
                  {MODES.map(([value, label]) => <option value={value}>{label}</option>)}
                </select>
              </label>
              <label>
                Compatibility with the previous version
                <select id="schema-compatibility" data-testid="schema-compatibility" value={form.compatibility} onChange={field("compatibility")}>
                  {COMPATIBILITIES.map(([value, label]) => <option value={value}>{label}</option>)}
                </select>
              </label>
            </div>
            <label>
              <span>JSON Schema of <code>data</code> <span class="muted small">(draft 2020-12)</span></span>
              <textarea id="schema-json" data-testid="schema-json" rows="18" class="mono" spellcheck={false} value={form.text} onInput={field("text")} />
            </label>
            <div class="row">
              <button type="button" class="ghost" id="schema-infer" data-testid="schema-infer" onClick={infer} disabled={busy}>Draft from recent events</button>
              <button type="submit" id="schema-save" data-testid="schema-save" disabled={busy}>
                {form.version ? `Save as version ${form.version + 1}` : "Save"}
              </button>
              {form.version && <button type="button" class="ghost" id="schema-delete" data-testid="schema-delete" onClick={remove}>Delete</button>}
              <button type="button" class="ghost" onClick={() => { clearMessages(); leave(null); }}>Close</button>
            </div>
            {messages}
          </form>
          <div class="panel" aria-label="Violations and versions">
            <div class="row">
              <h2 style="flex: 1">Violations</h2>
              <button type="button" class="ghost" onClick={loadReport} data-testid="violations-refresh">Refresh</button>
            </div>
            {selected ? <ViolationReport session={session} type={selected} entry={report.find((t) => t.type === selected)} /> : <p class="muted small">Name the event type.</p>}
            <h2>Versions</h2>
            <Versions versions={versions} onLoad={loadVersion} />
          </div>
        </div>
      )}
    </section>
  );
}
