// The plugins page: list with calls, errors, latency and fuel; upload a new version;
// enable/disable; versions, and the results of a plugin whose manifest declares a goal.
import { useEffect, useState } from "preact/hooks";
import { api, can, describe, get } from "../api.js";
import { ResultsPanel } from "./results_panel.jsx";

function Versions({ name }) {
  const [versions, setVersions] = useState(null);
  useEffect(() => {
    get(`/api/plugins/${encodeURIComponent(name)}/versions`).then(setVersions).catch(() => setVersions([]));
  }, [name]);
  if (!versions) return <p class="loading">Loading…</p>;
  return (
    <ol class="versions">
      {versions.map((v) => (
        <li>v{v.version} by {v.updated_by} · {new Date(v.updated_at).toLocaleString()} · <code class="small">{(v.sha256 ?? v.digest ?? "").slice(0, 12)}</code>{v.deleted ? " (deleted)" : ""}</li>
      ))}
    </ol>
  );
}

export function PluginsPage({ session }) {
  const [plugins, setPlugins] = useState(null);
  const [stats, setStats] = useState({});
  const [budget, setBudget] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [open, setOpen] = useState(null);
  const [name, setName] = useState("");
  const [file, setFile] = useState(null);
  const mayWrite = can(session, "developer");
  const load = () => {
    get("/api/plugins").then(setPlugins).catch((e) => setError(describe(e)));
    get("/api/stats")
      .then((s) => {
        setStats(s.plugins ?? {});
        setBudget(s.plugin_budget);
      })
      .catch(() => {});
  };
  useEffect(load, []);
  const upload = async (e) => {
    e.preventDefault();
    setError(null);
    if (!file) return setError("Choose a .wasm file.");
    try {
      const bytes = await file.arrayBuffer();
      const { data } = await api("PUT", `/api/plugins/${encodeURIComponent(name)}`, bytes, { raw: true, contentType: "application/wasm" });
      setNotice(`Uploaded ${data.name} v${data.version}.`);
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const toggle = async (p, enabled) => {
    setError(null);
    try {
      await api("PATCH", `/api/plugins/${encodeURIComponent(p.name)}`, { enabled });
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <section>
      <h1>Plugins</h1>
      {notice && <p class="notice" role="status" data-testid="notice">{notice}</p>}
      {error && <p class="error" role="alert">{error}</p>}
      {budget && (
        <p class="muted small" data-testid="plugin-budget">
          Each call's budget: {budget.deadline_ms} ms, {Math.round(budget.max_memory_bytes / 1048576)} MiB memory,{" "}
          {budget.fuel ? `${budget.fuel} fuel` : "fuel unlimited"}, {Math.round(budget.max_output_bytes / 1024)} KiB output. Figures are this instance's since it started.
        </p>
      )}
      {plugins && plugins.length === 0 && <p class="empty">No plugins. {mayWrite ? "Upload a .wasm built with the nudge SDK below." : "A developer can upload one."}</p>}
      {plugins && plugins.length > 0 && (
        <table class="list" data-testid="plugins-table">
          <thead>
            <tr>
              <th scope="col">Plugin</th><th scope="col">Enabled</th><th scope="col">Triggers</th><th scope="col" class="num">Calls</th>
              <th scope="col" class="num">Errors</th><th scope="col" class="num">Avg / max ms</th><th scope="col" class="num">Fuel / call</th><th scope="col">Worst call vs deadline</th>
            </tr>
          </thead>
          <tbody>
            {plugins.map((p) => {
              const s = stats[p.name] ?? {};
              const m = p; // the manifest fields are flattened into the record
              const avg = s.calls ? ((s.call_seconds_total / s.calls) * 1000).toFixed(2) : "—";
              const max = s.calls ? (s.call_seconds_max * 1000).toFixed(2) : "—";
              return [
                <tr>
                  <td>
                    <button type="button" class="link" onClick={() => setOpen(open === p.name ? null : p.name)} aria-expanded={open === p.name}>{p.name}</button>
                    <div class="muted small">v{p.version} · {m.description ?? ""}</div>
                    {s.quarantined_until_ms > Date.now() && (
                      <span class="badge off" data-testid="quarantined" title="It kept breaking its limits: its calls fail at once until then (plugin_quarantine_ms).">
                        quarantined until {new Date(s.quarantined_until_ms).toLocaleTimeString()}
                      </span>
                    )}
                  </td>
                  <td>
                    <input type="checkbox" role="switch" aria-label={`Enable ${p.name}`} checked={m.enabled !== false} disabled={!mayWrite} onChange={(e) => toggle(p, e.currentTarget.checked)} />
                  </td>
                  <td class="mono small">{(m.triggers ?? []).join(", ") || "called by rules"}</td>
                  <td class="num">{s.calls ?? 0}</td>
                  <td class={s.errors ? "num error-text" : "num"} title={s.last_error ?? ""}>{s.errors ?? 0}</td>
                  <td class="num">{avg} / {max}</td>
                  <td class="num">{s.calls && s.fuel_total ? Math.round(s.fuel_total / s.calls) : "—"}</td>
                  <td class="small">
                    {budget ? `${s.calls ? Math.round((s.call_seconds_max * 1000 * 100) / budget.deadline_ms) : 0}% of ${budget.deadline_ms} ms` : ""}
                  </td>
                </tr>,
                open === p.name && (
                  <tr>
                    <td colSpan="8">
                      <Versions name={p.name} />
                      {(m.goal || m.holdout) && <ResultsPanel path={`/api/plugins/${encodeURIComponent(p.name)}/results`} noun="plugin" />}
                    </td>
                  </tr>
                ),
              ];
            })}
          </tbody>
        </table>
      )}
      {mayWrite && (
        <form class="card" onSubmit={upload} aria-label="Upload a plugin">
          <h2>Upload a plugin</h2>
          <label>Name <input value={name} onInput={(e) => setName(e.currentTarget.value)} required pattern="[a-z0-9][a-z0-9-]*" placeholder="push-compose" data-testid="plugin-name" /></label>
          <label>WebAssembly component (.wasm) <input type="file" accept=".wasm,application/wasm" onChange={(e) => setFile(e.currentTarget.files[0])} data-testid="plugin-file" /></label>
          <button type="submit" data-testid="plugin-upload">Upload</button>
        </form>
      )}
    </section>
  );
}
