// The dead letters page: each event nudge gave up on, with its reason and payload; re-drive
// one or all once the cause is fixed. `/dlq?kind=schema_violation&type=cart.updated` shows (and
// re-drives) the letters of one kind and event type only.
import { useEffect, useState } from "preact/hooks";
import { api, describe, get } from "../api.js";
import { navigate } from "../main.jsx";

export function DeadLettersPage({ session, kind, type }) {
  const [letters, setLetters] = useState(null);
  const [total, setTotal] = useState(0);
  const [open, setOpen] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const filter = new URLSearchParams();
  if (kind) filter.set("kind", kind);
  if (type) filter.set("type", type);
  const query = filter.toString();
  const load = () =>
    get(`/api/dlq?limit=200${query ? `&${query}` : ""}`)
      .then((d) => {
        setLetters(d.letters);
        setTotal(d.total);
      })
      .catch((e) => setError(describe(e)));
  useEffect(load, [query]);
  const shown = letters;
  const redrive = async (sequence) => {
    setError(null);
    try {
      const path = sequence ? `/api/dlq/${sequence}/redrive` : `/api/dlq/redrive${query ? `?${query}` : ""}`;
      const { data } = await api("POST", path);
      setNotice(sequence ? `Re-drove dead letter ${sequence} to ${data.subject}.` : `Re-drove ${data.redriven}; ${data.failed.length} failed.`);
      load();
    } catch (e) {
      setError(describe(e));
    }
  };
  return (
    <section>
      <div class="page-head">
        <h1>Dead letters</h1>
        <span class="muted">{total} stored</span>
        <label class="switch">
          Kind
          <select value={kind ?? ""} onChange={(e) => navigate(e.currentTarget.value ? `/dlq?kind=${encodeURIComponent(e.currentTarget.value)}` : "/dlq")} data-testid="dlq-kind">
            <option value="">every kind</option>
            {session.dead_letter_kinds.map((k) => <option value={k}>{k}</option>)}
          </select>
        </label>
        {type && <span class="badge" data-testid="dlq-type">{type}</span>}
        {letters?.length > 0 && (
          <button type="button" onClick={() => redrive(null)} data-testid={query ? "redrive-kind" : "redrive-all"}>
            {query ? `Re-drive every ${[kind, type].filter(Boolean).join(" ")} letter` : "Re-drive all"}
          </button>
        )}
      </div>
      {notice && <p class="notice" role="status" data-testid="notice">{notice}</p>}
      {error && <p class="error" role="alert">{error}</p>}
      {letters?.length === 0 && !query && <p class="empty">No dead letters: every event was processed.</p>}
      {letters?.length === 0 && query && <p class="empty" data-testid="dlq-kind-empty">No {[kind, type].filter(Boolean).join(" ")} dead letters.</p>}
      {shown?.length > 0 && (
        <table class="list" data-testid="dlq-table">
          <thead>
            <tr><th scope="col">#</th><th scope="col">Subject</th><th scope="col">Kind</th><th scope="col">Reason</th><th scope="col">Stored</th><th scope="col"></th></tr>
          </thead>
          <tbody>
            {shown.map((l) => [
              <tr>
                <td>{l.sequence}</td>
                <td class="mono small">{l.subject}</td>
                <td><span class="badge off">{l.kind}</span></td>
                <td class="small">{l.reason}</td>
                <td class="small">{new Date(l.stored_at).toLocaleString()}</td>
                <td class="row">
                  <button type="button" class="ghost" aria-expanded={open === l.sequence} onClick={() => setOpen(open === l.sequence ? null : l.sequence)}>Payload</button>
                  <button type="button" onClick={() => redrive(l.sequence)}>Re-drive</button>
                </td>
              </tr>,
              open === l.sequence && (
                <tr><td colSpan="6"><pre class="mono">{typeof l.payload === "string" ? l.payload : JSON.stringify(l.payload, null, 2)}</pre></td></tr>
              ),
            ])}
          </tbody>
        </table>
      )}
    </section>
  );
}
