// Admin: named ingest write keys, each with its rate limit — created (shown once), rotated
// (the previous secret accepted for a grace period), revoked.
import { useEffect, useState } from "preact/hooks";
import { api, describe, get } from "../api.js";

function until(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

export function WriteKeys() {
  const [keys, setKeys] = useState([]);
  const [form, setForm] = useState({ name: "", rate_per_s: "", burst: "" });
  const [secret, setSecret] = useState(null);
  const [error, setError] = useState(null);
  const load = () => get("/api/write-keys").then((k) => setKeys(k.write_keys)).catch((e) => setError(describe(e)));
  useEffect(load, []);
  const act = async (method, path, body) => {
    setError(null);
    try {
      const { data } = await api(method, path, body);
      if (data?.key) setSecret({ name: data.name, key: data.key });
      load();
      return true;
    } catch (err) {
      setError(describe(err));
      return false;
    }
  };
  const create = async (e) => {
    e.preventDefault();
    const body = { name: form.name };
    if (form.rate_per_s) body.rate_per_s = Number(form.rate_per_s);
    if (form.burst) body.burst = Number(form.burst);
    if (await act("POST", "/api/write-keys", body)) setForm({ name: "", rate_per_s: "", burst: "" });
  };
  return (
    <div class="card">
      <h2>Write keys</h2>
      <p class="muted small">One per source that sends events (HTTP Basic user name, as Segment's libraries send it). Each has its own rate limit, per instance.</p>
      {secret && <p class="notice" role="status">Copy the key of <strong>{secret.name}</strong> now, it is not shown again: <code data-testid="new-write-key">{secret.key}</code></p>}
      <table class="list">
        <thead><tr><th scope="col">Name</th><th scope="col">Rate</th><th scope="col">Created</th><th scope="col">Rotated</th><th scope="col">Status</th></tr></thead>
        <tbody>
          {keys.map((k) => (
            <tr>
              <td>{k.name}</td>
              <td class="small">{k.rate_per_s}/s, burst {k.burst}</td>
              <td class="small">{k.created_at} by {k.created_by}</td>
              <td class="small">{k.rotated_at ? `${k.rotated_at} by ${k.rotated_by}; the previous key works until ${until(k.previous_valid_until_ms)}` : "never"}</td>
              <td>
                {k.revoked_at ? <span class="badge off">revoked {k.revoked_at}</span> : (
                  <>
                    <button type="button" class="ghost" onClick={() => act("POST", `/api/write-keys/${k.name}/rotate`, {})}>Rotate</button>
                    <button type="button" class="ghost" onClick={() => act("DELETE", `/api/write-keys/${k.name}`)}>Revoke</button>
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="filters" onSubmit={create} aria-label="Create a write key">
        <label>Name <input value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} required placeholder="shop-web" /></label>
        <label>Requests/s <input type="number" min="1" value={form.rate_per_s} onInput={(e) => setForm({ ...form, rate_per_s: e.currentTarget.value })} placeholder="default" /></label>
        <label>Burst <input type="number" min="1" value={form.burst} onInput={(e) => setForm({ ...form, burst: e.currentTarget.value })} placeholder="default" /></label>
        <button type="submit">Create write key</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
    </div>
  );
}
