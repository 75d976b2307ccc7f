// A profile's page: its state (attributes, consent, counters, timers, caps), its recent
// decisions with why each action fired, was held or was suppressed, and what became of its
// delivered actions (each attempt with its answer).
import { useEffect, useState } from "preact/hooks";
import { describe, get } from "../api.js";
import { navigate } from "../main.jsx";

const pretty = (v) => JSON.stringify(v, null, 2);
const REFRESH_MS = 2000;

// What became of a published action, for its line in the trace: "→ delivered", "→ failed after
// 5 attempts"; nothing for channels nudge does not deliver.
function fate(delivery) {
  if (!delivery) return null;
  const attempts = delivery.attempts > 1 ? ` after ${delivery.attempts} attempts` : "";
  return ` → ${delivery.state}${attempts}`;
}

function Decision({ d, deliveries }) {
  return (
    <li class="decision">
      <div>
        <code>{d.event_type}</code> <span class="muted small">{d.at} · {d.event_id}</span>
        {d.skipped && <span class="badge off">{d.skipped}</span>}
      </div>
      {d.schema_violations?.map((v) => (
        <div class="small warning-text" data-testid="trace-violation">
          schema: {v.kind} at <code>{v.instance_path || "/"}</code> — {v.message}
        </div>
      ))}
      {d.matched?.length > 0 && <div class="small">matched: {d.matched.join(", ")}</div>}
      {d.fired?.map((f) => (
        <div class="small ok" data-testid="trace-fired">
          decided → published {f.channel} by {f.rule}{fate(deliveries.get(f.id))}
        </div>
      ))}
      {d.held?.map((f) => <div class="small">held {f.channel} by {f.rule} until {f.until}</div>)}
      {d.suppressed?.map((f) => (
        <div class="small error-text">suppressed {f.channel ?? ""} by {f.rule}: {f.reason}{f.detail ? ` — ${f.detail}` : ""}</div>
      ))}
    </li>
  );
}

const STATE_CLASS = { delivered: "ok", retrying: "", redriven: "" };

function Delivery({ d }) {
  const last = d.history[d.history.length - 1];
  return (
    <li class="decision">
      <div>
        <code>{d.channel}</code> {d.endpoint && <strong>{d.endpoint}</strong>}{" "}
        <span class={`small ${STATE_CLASS[d.state] ?? "error-text"}`}>
          {d.state}{d.attempts > 1 ? ` after ${d.attempts} attempts` : ""}
        </span>
        <span class="muted small"> · {last.at} · {d.action_id.slice(0, 12)}</span>
      </div>
      {d.history.map((a) => (
        <div class="small muted">
          {a.outcome === "redriven" ? "re-driven" : `attempt ${a.attempt}: ${a.outcome}`}
          {a.status ? ` (${d.channel === "email" ? "SMTP" : "HTTP"} ${a.status})` : ""}{a.latency_ms ? ` in ${a.latency_ms} ms` : ""}
          {a.error ? ` — ${a.error}` : ""}
        </div>
      ))}
    </li>
  );
}

export function ProfilePage({ id }) {
  const [query, setQuery] = useState(id ?? "");
  const [profile, setProfile] = useState(null);
  const [trace, setTrace] = useState(null);
  const [deliveries, setDeliveries] = useState(null);
  const [error, setError] = useState(null);
  // The state shown is the last checkpoint's (each partition writes its profiles every
  // checkpoint interval), so the page refreshes itself: a profile whose first action was just
  // published appears within a refresh instead of staying "not seen".
  useEffect(() => {
    if (!id) return;
    let open = true;
    const path = `/api/profiles/${encodeURIComponent(id)}`;
    const load = () => {
      get(path)
        .then((p) => { if (open) { setProfile(p); setError(null); } })
        .catch((e) => { if (open) setError(describe(e)); });
      get(`${path}/trace?limit=50`)
        .then((t) => { if (open) setTrace(t.decisions); })
        .catch(() => { if (open) setTrace([]); });
      get(`${path}/deliveries`)
        .then((d) => { if (open) setDeliveries(d.deliveries); })
        .catch(() => { if (open) setDeliveries([]); });
    };
    setProfile(null);
    setTrace(null);
    setDeliveries(null);
    setError(null);
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => { open = false; clearInterval(timer); };
  }, [id]);
  const byAction = new Map((deliveries ?? []).map((d) => [d.action_id, d]));
  return (
    <section>
      <h1>Profiles</h1>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); if (query) navigate(`/profiles/${encodeURIComponent(query)}`); }}>
        <label>Profile id <input value={query} onInput={(e) => setQuery(e.currentTarget.value)} placeholder="user-42" data-testid="profile-id" /></label>
        <button type="submit">Look up</button>
      </form>
      {!id && <p class="empty">Enter a profile id (the CloudEvent `subject`) to see its state and decisions.</p>}
      {error && <p class="error" role="alert">{error}</p>}
      {profile && (
        <div class="split">
          <div class="main-col">
            <h2>State</h2>
            <table class="facts" data-testid="profile-state">
              <tbody>
                <tr><th>Time zone</th><td>{profile.timezone ?? "—"}</td></tr>
                <tr><th>Seen since</th><td>{profile.created_at}</td></tr>
                <tr><th>Updated</th><td>{profile.updated_at}</td></tr>
                <tr><th>Attributes</th><td><pre class="mono">{pretty(profile.attributes)}</pre></td></tr>
                <tr><th>Consent</th><td><pre class="mono">{pretty(profile.consent)}</pre></td></tr>
                <tr><th>Counters</th><td><pre class="mono">{pretty(profile.counters)}</pre></td></tr>
                <tr><th>Pending timers</th><td>{profile.timers.length ? profile.timers.map((t) => <div>{t.name} due {t.due} ({t.rule})</div>) : "none"}</td></tr>
                <tr><th>Caps used</th><td><pre class="mono">{pretty(profile.caps)}</pre></td></tr>
              </tbody>
            </table>
          </div>
          <div class="side-col">
            <h2>Decisions</h2>
            {trace?.length === 0 && <p class="empty">No decisions recorded.</p>}
            <ol class="decisions" data-testid="profile-trace">
              {(trace ?? []).map((d) => <Decision d={d} deliveries={byAction} />)}
            </ol>
            <h2>Deliveries</h2>
            {deliveries?.length === 0 && <p class="empty">No delivered actions.</p>}
            <ol class="decisions" data-testid="profile-deliveries">{(deliveries ?? []).map((d) => <Delivery d={d} />)}</ol>
          </div>
        </div>
      )}
    </section>
  );
}
