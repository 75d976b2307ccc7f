// The test panel: pick a pinned sample, a recent real event, or paste one; add a profile; run
// the draft as it is in the editor and see the actions it would fire and the decision trace.
import { useEffect, useState } from "preact/hooks";
import { api, can, describe, get } from "../api.js";
import { specOf } from "./editor.jsx";

function exampleEvent(type) {
  return {
    specversion: "1.0",
    id: `test-${Date.now()}`,
    source: "nudge-ui",
    type,
    subject: "user-42",
    time: new Date().toISOString(),
    data: { total: 120, items: [{ sku: "SKU-1", qty: 1 }] },
  };
}

const pretty = (value) => JSON.stringify(value, null, 2);

export function TestPanel({ session, ruleId, rule }) {
  const firstTrigger = rule.triggers.find((t) => !t.includes("*") && !t.includes(">")) ?? "cart.updated";
  const [eventText, setEventText] = useState(pretty(exampleEvent(firstTrigger)));
  const [profileText, setProfileText] = useState("");
  const [samples, setSamples] = useState([]);
  const [recent, setRecent] = useState([]);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const mayRun = can(session, "marketer");
  const path = `/api/rules/${encodeURIComponent(ruleId || "draft")}`;

  useEffect(() => {
    if (ruleId) get(`${path}/samples`).then((s) => setSamples(s.samples ?? [])).catch(() => {});
    get(`/api/events/recent?type=${encodeURIComponent(firstTrigger)}&limit=10`)
      .then((r) => setRecent(r.events ?? []))
      .catch(() => {});
  }, [ruleId, firstTrigger]);

  const parse = (text, field) => {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`${field} is not valid JSON: ${e.message}`);
    }
  };

  const run = async () => {
    setError(null);
    setResult(null);
    try {
      const body = { event: parse(eventText, "The event"), rule: specOf(rule) };
      if (profileText.trim()) body.profile = parse(profileText, "The profile");
      const { data } = await api("POST", `${path}/test`, body);
      setResult(data);
    } catch (e) {
      setError(describe(e));
    }
  };

  const pin = async () => {
    setError(null);
    try {
      const event = parse(eventText, "The event");
      const name = `${event.type} · ${event.subject}`;
      const next = [...samples.filter((s) => s.name !== name), { name, event }];
      const { data } = await api("PUT", `${path}/samples`, { samples: next });
      setSamples(data.samples);
    } catch (e) {
      setError(describe(e));
    }
  };

  const choose = (e) => {
    const [kind, index] = e.currentTarget.value.split(":");
    const picked = kind === "sample" ? samples[index] : { event: recent[index] };
    if (!picked) return;
    setEventText(pretty(picked.event));
    if (picked.profile) setProfileText(pretty(picked.profile));
  };

  return (
    <div class="panel" data-testid="test-panel">
      <label>
        Sample event
        <select onChange={choose} data-testid="sample-select">
          <option value="">Pick a pinned sample or a recent event…</option>
          {samples.length > 0 && (
            <optgroup label="Pinned to this rule">
              {samples.map((s, i) => <option value={`sample:${i}`}>{s.name}</option>)}
            </optgroup>
          )}
          <optgroup label={recent.length ? `Recent ${firstTrigger} events` : `No recent ${firstTrigger} events`}>
            {recent.map((ev, i) => <option value={`recent:${i}`}>{ev.subject} · {ev.time ?? ev.id}</option>)}
          </optgroup>
        </select>
      </label>
      <label>
        Event (CloudEvent JSON)
        <textarea rows="10" class="mono" value={eventText} onInput={(e) => setEventText(e.currentTarget.value)} data-testid="test-event" />
      </label>
      <label>
        Profile (optional JSON: attributes, consent, timezone)
        <textarea rows="3" class="mono" value={profileText} onInput={(e) => setProfileText(e.currentTarget.value)} placeholder='{"id": "user-42", "attributes": {"tier": "gold"}}' />
      </label>
      {mayRun ? (
        <div class="row">
          <button type="button" onClick={run} data-testid="run-test">Run</button>
          {ruleId && <button type="button" class="ghost" onClick={pin}>Pin this sample</button>}
        </div>
      ) : (
        <p class="muted">Viewers cannot run tests.</p>
      )}
      {error && <p class="error" role="alert">{error}</p>}
      {result && (
        <div data-testid="test-result">
          <h3>
            {result.actions.length} action{result.actions.length === 1 ? "" : "s"} would fire
            {!result.triggered && <span class="muted"> (the rule is not triggered by this event type)</span>}
          </h3>
          <ul class="actions">
            {result.actions.map((a) => (
              <li data-testid="test-action">
                <b>{a.type.replace("nudge.action.", "")}</b> to {a.subject}
                <pre class="mono">{pretty(a.data)}</pre>
              </li>
            ))}
          </ul>
          {result.failures.length > 0 && (
            <div class="error">
              {result.failures.map((f) => <p>{f.rule}: {f.message ?? f.failure?.message ?? pretty(f)}</p>)}
            </div>
          )}
          {result.logs.length > 0 && <pre class="mono">{result.logs.join("\n")}</pre>}
          <details open>
            <summary>Decision trace</summary>
            <pre class="mono" data-testid="test-trace">{pretty(result.trace)}</pre>
          </details>
        </div>
      )}
    </div>
  );
}
