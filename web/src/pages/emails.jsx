// E-mails: the templates `email(#{ to, template, … })` actions are rendered from. Marketers
// write the subject and the HTML and text bodies (MiniJinja: `{{ total }}`,
// `{{ profile.attributes.name }}`, `{{ unsubscribe_url }}`) and see the e-mail as it will
// look while they type, with sample variables or a real profile; everyone else reads. Below,
// how the SMTP relay is doing.
import { useEffect, useRef, useState } from "preact/hooks";
import { ago, api, can, describe, get } from "../api.js";

const STARTER = {
  name: "",
  subject: "Still thinking about it, {{ profile.attributes.name | default('there') }}?",
  html: '<p>Hi {{ profile.attributes.name | default("there") }},</p>\n<p>Your cart holds {{ total }} €.</p>\n<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
  text: "Hi {{ profile.attributes.name | default('there') }},\nyour cart holds {{ total }} €.\n\nUnsubscribe: {{ unsubscribe_url }}",
  version: null,
};
const SAMPLE_VARIABLES = '{\n  "total": 120\n}';

// How long typing pauses before the preview renders again.
const PREVIEW_DELAY_MS = 300;

function Preview({ preview, error }) {
  if (error) return <p class="error" role="alert" data-testid="email-preview-error">{error}</p>;
  if (!preview) return <p class="loading">Rendering…</p>;
  return (
    <div data-testid="email-preview">
      <div class="small muted">Subject</div>
      <div data-testid="email-preview-subject"><strong>{preview.subject}</strong></div>
      {preview.html && (
        // No scripts, no same-origin: the e-mail cannot reach the app it is shown in.
        <iframe title="HTML preview" sandbox="" srcdoc={preview.html} class="email-frame" data-testid="email-preview-html" />
      )}
      {preview.text && <pre data-testid="email-preview-text">{preview.text}</pre>}
    </div>
  );
}

function RelayFigures({ relays }) {
  const entries = Object.entries(relays ?? {});
  if (entries.length === 0) return <p class="muted small">No e-mail sent yet.</p>;
  return entries.map(([relay, f]) => (
    <p class="small" data-testid="email-relay">
      SMTP relay <code>{relay}</code>: {f.calls} attempts · {Math.round((100 * f.fired) / Math.max(f.calls, 1))}% delivered ·
      mean {Math.round((1000 * f.call_seconds_total) / Math.max(f.calls, 1))} ms · p99 ≤ {Math.round(f.call_p99_ms)} ms
      {f.breaker_open && <span class="badge off">breaker open</span>}
      {f.last_error && f.errors > 0 && <span class="error-text"> — last error: {f.last_error}</span>}
    </p>
  ));
}

export function EmailsPage({ session }) {
  const mayEdit = can(session, "marketer");
  const [templates, setTemplates] = useState(null);
  const [form, setForm] = useState(null);
  const [variables, setVariables] = useState(SAMPLE_VARIABLES);
  const [profileId, setProfileId] = useState("");
  const [preview, setPreview] = useState(null);
  const [previewError, setPreviewError] = useState(null);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(null);
  const [relays, setRelays] = useState({});
  const timer = useRef(null);

  const load = () => {
    get("/api/email-templates").then((t) => setTemplates(t.templates)).catch((e) => setError(describe(e)));
    get("/api/stats").then((s) => setRelays(s.email ?? {})).catch(() => setRelays({}));
  };
  useEffect(load, []);

  // The live preview: the text as typed, rendered by nudge exactly as delivery will.
  useEffect(() => {
    if (!form || !mayEdit) return;
    clearTimeout(timer.current);
    timer.current = setTimeout(async () => {
      let parsed;
      try {
        parsed = variables.trim() ? JSON.parse(variables) : {};
      } catch (e) {
        setPreviewError(`Sample variables: not JSON (${e.message})`);
        return;
      }
      const body = { subject: form.subject, html: form.html, text: form.text, variables: parsed };
      if (profileId.trim()) body.profile_id = profileId.trim();
      const name = form.name.trim() || "draft";
      try {
        const { data } = await api("POST", `/api/email-templates/${encodeURIComponent(name)}/preview`, body);
        setPreview(data);
        setPreviewError(null);
      } catch (err) {
        setPreviewError(err.line ? `${err.field}, line ${err.line}: ${err.message}` : describe(err));
      }
    }, PREVIEW_DELAY_MS);
    return () => clearTimeout(timer.current);
  }, [form?.subject, form?.html, form?.text, form?.name, variables, profileId]);

  const open = (t) => {
    setSaved(null);
    setError(null);
    setPreview(null);
    setForm({ name: t.name, subject: t.subject, html: t.html, text: t.text, version: t.version });
  };
  const save = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const body = { subject: form.subject, html: form.html, text: form.text };
      if (form.version) body.version = form.version;
      const { data } = await api("PUT", `/api/email-templates/${encodeURIComponent(form.name.trim())}`, body);
      setForm({ ...form, name: data.name, version: data.version });
      setSaved(`Saved ${data.name} as version ${data.version}.`);
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const remove = async () => {
    if (!confirm(`Delete the template ${form.name}? E-mails that name it wait in the dead letters until it exists again.`)) return;
    try {
      await api("DELETE", `/api/email-templates/${encodeURIComponent(form.name)}`);
      setForm(null);
      load();
    } catch (err) {
      setError(describe(err));
    }
  };
  const field = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });

  return (
    <section>
      <div class="page-head">
        <h1>E-mails</h1>
        {mayEdit && <button type="button" onClick={() => { setForm({ ...STARTER }); setSaved(null); }} data-testid="email-new">New template</button>}
      </div>
      <p class="muted">
        Templates that rules send with <code>email(#{"{ to, template: \"name\", … }"})</code>. Variables: the action's
        fields, <code>profile</code> (<code>id</code>, <code>attributes</code>, <code>consent</code>,{" "}
        <code>timezone</code>) and <code>unsubscribe_url</code>. Every e-mail carries an unsubscribe link that opts the
        person out of e-mail.
      </p>
      <RelayFigures relays={relays} />
      {templates?.length === 0 && <p class="empty" data-testid="emails-empty">No e-mail templates yet.</p>}
      {templates?.length > 0 && (
        <table class="list" data-testid="emails-table">
          <thead>
            <tr><th scope="col">Name</th><th scope="col">Subject</th><th scope="col">Version</th><th scope="col">Changed</th><th scope="col"></th></tr>
          </thead>
          <tbody>
            {templates.map((t) => (
              <tr data-testid={`email-${t.name}`}>
                <td>{t.name}</td>
                <td class="mono small">{t.subject}</td>
                <td class="num">v{t.version}</td>
                <td class="small" title={t.updated_at}>{ago(t.updated_at)} by {t.updated_by}</td>
                <td><button type="button" class="ghost" onClick={() => open(t)}>{mayEdit ? "Edit" : "View"}</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {form && (
        <div class="split" style="margin-top: 14px">
          <form class="panel" onSubmit={save} aria-label="E-mail template">
            <label>Name <input value={form.name} onInput={field("name")} required readOnly={!!form.version} placeholder="abandoned-cart" data-testid="email-name" /></label>
            <label>Subject <input value={form.subject} onInput={field("subject")} required readOnly={!mayEdit} data-testid="email-subject" /></label>
            <label>HTML body <textarea rows="10" class="mono" value={form.html} onInput={field("html")} readOnly={!mayEdit} data-testid="email-html" /></label>
            <label>Text body <textarea rows="6" class="mono" value={form.text} onInput={field("text")} readOnly={!mayEdit} data-testid="email-text" /></label>
            {mayEdit && (
              <div class="row">
                <button type="submit" data-testid="email-save">{form.version ? `Save as version ${form.version + 1}` : "Save template"}</button>
                {form.version && <button type="button" class="ghost" onClick={remove}>Delete</button>}
                <button type="button" class="ghost" onClick={() => setForm(null)}>Close</button>
              </div>
            )}
            {saved && <p class="notice" role="status" data-testid="email-saved">{saved}</p>}
            {error && <p class="error" role="alert" data-testid="email-error">{error}</p>}
          </form>
          {mayEdit && (
            <div class="panel" aria-label="Preview">
              <h2>Preview</h2>
              <label>Sample variables <span class="muted small">JSON, as a rule's <code>email(#{"{ … }"})</code> passes them</span>
                <textarea rows="4" class="mono" value={variables} onInput={(e) => setVariables(e.currentTarget.value)} data-testid="email-variables" />
              </label>
              <label>Profile <input value={profileId} onInput={(e) => setProfileId(e.currentTarget.value)} placeholder="a sample profile (Ada Lovelace)" data-testid="email-profile" /></label>
              <Preview preview={preview} error={previewError} />
            </div>
          )}
        </div>
      )}
    </section>
  );
}
