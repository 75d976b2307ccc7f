// The live view: events arriving and actions fired, streamed from /api/live (server-sent
// events), filterable by rule, channel and profile.
import { useEffect, useState } from "preact/hooks";
import { Link } from "../main.jsx";

const KEEP = 200;

export function LivePage({ session }) {
  const [filter, setFilter] = useState({ rule: "", channel: "", profile: "" });
  const [applied, setApplied] = useState(filter);
  const [items, setItems] = useState([]);
  const [status, setStatus] = useState("connecting");
  const [paused, setPaused] = useState(false);
  useEffect(() => {
    if (paused) return;
    const query = new URLSearchParams(Object.entries(applied).filter(([, v]) => v));
    const source = new EventSource(`/api/live?${query}`);
    const add = (e) => {
      const item = JSON.parse(e.data);
      setItems((list) => [item, ...list].slice(0, KEEP));
    };
    source.addEventListener("event", add);
    source.addEventListener("action", add);
    source.addEventListener("lagged", add);
    source.onopen = () => setStatus("live");
    source.onerror = () => setStatus("reconnecting");
    return () => source.close();
  }, [applied, paused]);
  const field = (name) => (e) => setFilter({ ...filter, [name]: e.currentTarget.value });
  return (
    <section>
      <div class="page-head">
        <h1>Live</h1>
        <span class={status === "live" && !paused ? "badge on" : "badge off"} data-testid="live-status">{paused ? "paused" : status}</span>
        <button type="button" class="ghost" onClick={() => setPaused(!paused)}>{paused ? "Resume" : "Pause"}</button>
        <button type="button" class="ghost" onClick={() => setItems([])}>Clear</button>
      </div>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); setItems([]); setApplied(filter); }}>
        <label>Rule <input value={filter.rule} onInput={field("rule")} placeholder="rule id" data-testid="filter-rule" /></label>
        <label>
          Channel
          <select value={filter.channel} onChange={field("channel")} data-testid="filter-channel">
            {["", ...session.channels].map((c) => <option value={c}>{c || "any"}</option>)}
          </select>
        </label>
        <label>Profile <input value={filter.profile} onInput={field("profile")} placeholder="user-42" data-testid="filter-profile" /></label>
        <button type="submit">Apply</button>
      </form>
      {items.length === 0 ? (
        <p class="empty" data-testid="live-empty">Waiting for events and actions{applied.rule || applied.channel || applied.profile ? " matching the filter" : ""}…</p>
      ) : (
        <table class="list" data-testid="live-table">
          <thead>
            <tr><th scope="col">Time</th><th scope="col">Kind</th><th scope="col">What</th><th scope="col">Profile</th><th scope="col">Details</th></tr>
          </thead>
          <tbody>
            {items.map((item) =>
              item.kind === "lagged" ? (
                <tr class="muted"><td colSpan="5">{item.skipped} items skipped (the view fell behind)</td></tr>
              ) : (
                <tr class={item.kind} data-testid={`live-${item.kind}`}>
                  <td class="small">{item.time ? new Date(item.time).toLocaleTimeString() : ""}</td>
                  <td><span class={`badge ${item.kind}`}>{item.kind === "action" ? item.channel : "event"}</span></td>
                  <td>{item.kind === "action" ? <>by <code>{item.rule}</code></> : <code>{item.type}</code>}</td>
                  <td><Link href={`/profiles/${encodeURIComponent(item.profile)}`}>{item.profile}</Link></td>
                  <td class="mono small ellipsis">{JSON.stringify(item.data)}</td>
                </tr>
              ),
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}
