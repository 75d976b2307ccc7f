// Admin: users, API tokens (shown once, revocable), write keys and the audit log.
import { useEffect, useState } from "preact/hooks";
import { ROLES, api, describe, get } from "../api.js";
import { WriteKeys } from "./write_keys.jsx";

function Users({ session }) {
  const [users, setUsers] = useState([]);
  const [form, setForm] = useState({ username: "", password: "", role: "marketer" });
  const [error, setError] = useState(null);
  const load = () => get("/api/users").then((u) => setUsers(u.users)).catch((e) => setError(describe(e)));
  useEffect(load, []);
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await api("POST", "/api/users", form);
      setForm({ username: "", password: "", role: form.role });
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const field = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });
  const remove = async (username) => {
    if (!confirm(`Remove ${username}? Their sessions end within a minute.`)) return;
    try {
      await api("DELETE", `/api/users/${encodeURIComponent(username)}`);
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <div class="card">
      <h2>Users</h2>
      <table class="list">
        <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Created</th><th scope="col"></th></tr></thead>
        <tbody>
          {users.map((u) => (
            <tr>
              <td>{u.username}</td>
              <td>{u.role}</td>
              <td class="small">{u.created_at} by {u.created_by}</td>
              <td>{u.username !== session.username && <button type="button" class="ghost" onClick={() => remove(u.username)}>Remove</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="filters" onSubmit={create} aria-label="Add a user">
        <label>User name <input value={form.username} onInput={field("username")} required /></label>
        <label>Password <input type="password" value={form.password} onInput={field("password")} required minLength="8" autocomplete="new-password" /></label>
        <label>Role <select value={form.role} onChange={field("role")}>{ROLES.map((r) => <option>{r}</option>)}</select></label>
        <button type="submit">Add user</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
    </div>
  );
}

function Tokens() {
  const [tokens, setTokens] = useState([]);
  const [form, setForm] = useState({ name: "", role: "developer" });
  const [secret, setSecret] = useState(null);
  const [error, setError] = useState(null);
  const load = () => get("/api/tokens").then((t) => setTokens(t.tokens)).catch((e) => setError(describe(e)));
  useEffect(load, []);
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const { data } = await api("POST", "/api/tokens", form);
      setSecret(data.token);
      setForm({ ...form, name: "" });
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const revoke = async (id) => {
    try {
      await api("DELETE", `/api/tokens/${id}`);
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <div class="card">
      <h2>API tokens</h2>
      {secret && <p class="notice" role="status">Copy the token now, it is not shown again: <code data-testid="new-token">{secret}</code></p>}
      <table class="list">
        <thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Created</th><th scope="col">Status</th></tr></thead>
        <tbody>
          {tokens.map((t) => (
            <tr>
              <td>{t.name} <span class="muted small">{t.id}</span></td>
              <td>{t.role}</td>
              <td class="small">{t.created_at} by {t.created_by}</td>
              <td>{t.revoked_at ? <span class="badge off">revoked {t.revoked_at}</span> : <button type="button" class="ghost" onClick={() => revoke(t.id)}>Revoke</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="filters" onSubmit={create} aria-label="Create a token">
        <label>Name <input value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} required placeholder="CI deploys" /></label>
        <label>Role <select value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>{ROLES.map((r) => <option>{r}</option>)}</select></label>
        <button type="submit">Create token</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
    </div>
  );
}

function Audit() {
  const [entries, setEntries] = useState(null);
  const [open, setOpen] = useState(null);
  useEffect(() => {
    get("/api/audit?limit=200").then((a) => setEntries(a.entries)).catch(() => setEntries([]));
  }, []);
  return (
    <div class="card">
      <h2>Audit log</h2>
      {entries?.length === 0 && <p class="empty">Nothing changed yet.</p>}
      <table class="list" data-testid="audit-table">
        <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Target</th><th scope="col"></th></tr></thead>
        <tbody>
          {(entries ?? []).map((e) => [
            <tr>
              <td class="small">{new Date(e.at).toLocaleString()}</td>
              <td>{e.actor} <span class="muted small">{e.role} · {e.via}</span></td>
              <td><code>{e.action}</code></td>
              <td>{e.target}</td>
              <td><button type="button" class="ghost" aria-expanded={open === e.sequence} onClick={() => setOpen(open === e.sequence ? null : e.sequence)}>Before / after</button></td>
            </tr>,
            open === e.sequence && (
              <tr><td colSpan="5" class="split">
                <pre class="mono">{JSON.stringify(e.before, null, 2)}</pre>
                <pre class="mono">{JSON.stringify(e.after, null, 2)}</pre>
              </td></tr>
            ),
          ])}
        </tbody>
      </table>
    </div>
  );
}

export function AdminPage({ session }) {
  return (
    <section>
      <h1>Admin</h1>
      <Users session={session} />
      <Tokens />
      <WriteKeys />
      <Audit />
    </section>
  );
}
