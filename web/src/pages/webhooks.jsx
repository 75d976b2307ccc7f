// Webhooks: the endpoints `webhook(name, …)` actions go to. Developers add, change, test (one
// signed request, its answer explained), rotate the signing secret of (shown once) and delete
// them; everyone else reads.
import { useEffect, useState } from "preact/hooks";
import { api, can, describe, get } from "../api.js";

const EMPTY = { name: "", url: "", timeout_ms: "", headers: "", rate_per_s: "", enabled: true };

// "Name: value" lines to a headers object, and back.
const parseHeaders = (text) =>
  Object.fromEntries(
    text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
      const at = line.indexOf(":");
      return at < 0 ? [line, ""] : [line.slice(0, at).trim(), line.slice(at + 1).trim()];
    }),
  );
const headerLines = (headers) => Object.entries(headers ?? {}).map(([k, v]) => `${k}: ${v}`).join("\n");

function specOf(form) {
  const spec = { url: form.url.trim(), headers: parseHeaders(form.headers), enabled: form.enabled };
  if (form.timeout_ms !== "") spec.timeout_ms = Number(form.timeout_ms);
  if (form.rate_per_s !== "") spec.rate_per_s = Number(form.rate_per_s);
  return spec;
}

// An endpoint's delivery figures, summed over every instance.
function Figures({ f }) {
  if (!f?.calls) return <span class="muted">none yet</span>;
  const share = Math.round((100 * f.fired) / f.calls);
  const mean = Math.round((1000 * f.call_seconds_total) / f.calls);
  return (
    <>
      <div>{f.calls} attempts · {share}% delivered</div>
      <div class="muted">mean {mean} ms · p99 ≤ {Math.round(f.call_p99_ms)} ms · slowest {Math.round(1000 * f.call_seconds_max)} ms</div>
      {f.breaker_open && <span class="badge off">breaker open</span>}
      {f.last_error && f.errors > 0 && <div class="error-text">{f.last_error}</div>}
    </>
  );
}

export function WebhooksPage({ session }) {
  const mayEdit = can(session, "developer");
  const [webhooks, setWebhooks] = useState(null);
  const [form, setForm] = useState(EMPTY);
  const [editing, setEditing] = useState(false);
  const [secret, setSecret] = useState(null);
  const [tested, setTested] = useState(null);
  const [error, setError] = useState(null);
  const [figures, setFigures] = useState({});
  const load = () => {
    get("/api/webhooks").then((w) => setWebhooks(w.webhooks)).catch((e) => setError(describe(e)));
    get("/api/stats").then((s) => setFigures(s.webhooks ?? {})).catch(() => setFigures({}));
  };
  useEffect(load, []);

  const save = async (e) => {
    e.preventDefault();
    setError(null);
    setSecret(null);
    try {
      const { status, data } = await api("PUT", `/api/webhooks/${encodeURIComponent(form.name.trim())}`, specOf(form));
      if (status === 201) setSecret({ name: data.name, secret: data.secret });
      setForm(EMPTY);
      setEditing(false);
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const edit = (w) => {
    setEditing(true);
    setForm({
      name: w.name, url: w.url, timeout_ms: String(w.timeout_ms), headers: headerLines(w.headers),
      rate_per_s: w.rate_per_s == null ? "" : String(w.rate_per_s), enabled: w.enabled,
    });
  };
  const rotate = async (name) => {
    if (!confirm(`A new signing secret for ${name}? The current one keeps signing for a day, so receivers can switch over.`)) return;
    setError(null);
    try {
      const { data } = await api("POST", `/api/webhooks/${encodeURIComponent(name)}/rotate`);
      setSecret({ name, secret: data.secret });
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const sendTest = async (name) => {
    setError(null);
    setTested({ name, pending: true });
    try {
      const { data } = await api("POST", `/api/webhooks/${encodeURIComponent(name)}/test`);
      setTested({ name, ...data });
    } catch (err) {
      setTested(null);
      setError(describe(err));
    }
  };
  const remove = async (name) => {
    if (!confirm(`Delete the webhook ${name}? Rules that call webhook("${name}", …) will have nowhere to deliver.`)) return;
    try {
      await api("DELETE", `/api/webhooks/${encodeURIComponent(name)}`);
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const field = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });

  return (
    <section>
      <div class="page-head">
        <h1>Webhooks</h1>
      </div>
      <p class="muted">
        Endpoints that rules address with <code>webhook("name", #{"{ … }"})</code>. Requests carry Standard Webhooks
        headers (<code>webhook-id</code>, <code>webhook-timestamp</code>, <code>webhook-signature</code>), signed with the
        endpoint's secret.
      </p>
      {secret && (
        <p class="notice" role="status">
          The signing secret of <strong>{secret.name}</strong>; copy it now, it is not shown again:{" "}
          <code data-testid="webhook-secret">{secret.secret}</code>
        </p>
      )}
      {tested && (
        <p class={tested.outcome === "delivered" ? "notice" : "error"} role="status" data-testid="webhook-test-result">
          {tested.pending
            ? `Sending a test request to ${tested.name}…`
            : `Test request to ${tested.name}: ${tested.outcome}` +
              (tested.status ? ` (HTTP ${tested.status})` : "") +
              ` in ${tested.latency_ms} ms` +
              (tested.error ? ` — ${tested.error}` : "") +
              (tested.retry_after ? `; it asked to retry after ${tested.retry_after}` : "")}
        </p>
      )}
      {webhooks?.length === 0 && <p class="empty" data-testid="webhooks-empty">No webhook endpoints yet.</p>}
      {webhooks?.length > 0 && (
        <table class="list" data-testid="webhooks-table">
          <thead>
            <tr><th scope="col">Name</th><th scope="col">URL</th><th scope="col">Status</th><th scope="col">Timeout</th><th scope="col">Secrets</th><th scope="col">Deliveries</th><th scope="col"></th></tr>
          </thead>
          <tbody>
            {webhooks.map((w) => (
              <tr data-testid={`webhook-${w.name}`}>
                <td>{w.name}</td>
                <td class="mono small">{w.url}</td>
                <td>
                  {w.enabled ? <span class="badge on">enabled</span> : <span class="badge off">disabled</span>}
                  {w.disabled_reason && <div class="small error-text">{w.disabled_reason}</div>}
                </td>
                <td class="small">{w.timeout_ms} ms{w.rate_per_s ? ` · ${w.rate_per_s}/s` : ""}</td>
                <td class="small mono">
                  {w.secrets.map((s) => <div>{s.fingerprint}{s.expires_at ? ` (until ${s.expires_at})` : ""}</div>)}
                </td>
                <td class="small" data-testid={`webhook-figures-${w.name}`}><Figures f={figures[w.name]} /></td>
                <td>
                  {mayEdit && (
                    <>
                      <button type="button" class="ghost" onClick={() => sendTest(w.name)}>Send test</button>
                      <button type="button" class="ghost" onClick={() => edit(w)}>Edit</button>
                      <button type="button" class="ghost" onClick={() => rotate(w.name)}>Rotate secret</button>
                      <button type="button" class="ghost" onClick={() => remove(w.name)}>Delete</button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {mayEdit && (
        <form class="card" onSubmit={save} aria-label={editing ? "Change a webhook" : "Add a webhook"}>
          <h2>{editing ? `Change ${form.name}` : "Add a webhook"}</h2>
          <div class="filters">
            <label>Name <input value={form.name} onInput={field("name")} required readOnly={editing} placeholder="crm" data-testid="webhook-name" /></label>
            <label>URL <input value={form.url} onInput={field("url")} required type="url" placeholder="https://crm.example/hooks/nudge" data-testid="webhook-url" /></label>
            <label>Timeout (ms) <input value={form.timeout_ms} onInput={field("timeout_ms")} inputMode="numeric" placeholder="5000" /></label>
            <label>Rate (per s) <input value={form.rate_per_s} onInput={field("rate_per_s")} inputMode="numeric" placeholder="no limit" /></label>
            <label class="switch"><input type="checkbox" role="switch" checked={form.enabled} onChange={(e) => setForm({ ...form, enabled: e.currentTarget.checked })} /> Enabled</label>
          </div>
          <label>
            <span>Extra headers <span class="muted small">one “Name: value” per line</span></span>
            <textarea rows="3" value={form.headers} onInput={field("headers")} placeholder="Authorization: Bearer …" />
          </label>
          <button type="submit" data-testid="webhook-save">{editing ? "Save" : "Add webhook"}</button>
          {editing && <button type="button" class="ghost" onClick={() => { setEditing(false); setForm(EMPTY); }}>Cancel</button>}
        </form>
      )}
      {error && <p class="error" role="alert" data-testid="webhook-error">{error}</p>}
    </section>
  );
}
