// The single-page app: session, navigation and the page for the current path.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { can, get, setCsrf, signOut } from "./api.js";
import { Login } from "./pages/login.jsx";
import { RulesPage } from "./pages/rules.jsx";
import { EditorPage } from "./pages/editor.jsx";
import { LivePage } from "./pages/live.jsx";
import { ProfilePage } from "./pages/profile.jsx";
import { PluginsPage } from "./pages/plugins.jsx";
import { DeadLettersPage } from "./pages/dlq.jsx";
import { AdminPage } from "./pages/admin.jsx";
import { ClusterPage } from "./pages/cluster.jsx";
import { WebhooksPage } from "./pages/webhooks.jsx";
import { EmailsPage } from "./pages/emails.jsx";
import { SchemasPage } from "./pages/schemas.jsx";

let setPath = () => {};

export function navigate(to) {
  history.pushState(null, "", to);
  setPath(location.pathname + location.search);
  window.scrollTo(0, 0);
}

export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}

const NAV = [
  ["/rules", "Rules", "viewer"],
  ["/live", "Live", "viewer"],
  ["/profiles", "Profiles", "viewer"],
  ["/plugins", "Plugins", "viewer"],
  ["/webhooks", "Webhooks", "viewer"],
  ["/emails", "E-mails", "viewer"],
  ["/schemas", "Schemas", "viewer"],
  ["/dlq", "Dead letters", "developer"],
  ["/cluster", "Cluster", "viewer"],
  ["/admin", "Admin", "admin"],
];

function Layout({ session, path, children }) {
  return (
    <div class="shell">
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <span class="brand">nudge</span>
        <nav aria-label="Main">
          {NAV.filter(([, , role]) => can(session, role)).map(([href, label]) => (
            <Link href={href} class={path.startsWith(href) ? "active" : ""} aria-current={path.startsWith(href) ? "page" : undefined}>
              {label}
            </Link>
          ))}
        </nav>
        <span class="who" data-testid="who">
          {session.username} · {session.role}
        </span>
        <button type="button" class="ghost" onClick={signOut} data-testid="logout">
          Sign out
        </button>
      </header>
      <main id="main">{children}</main>
    </div>
  );
}

function page(path, session) {
  const [pathname, query] = path.split("?");
  const params = new URLSearchParams(query ?? "");
  const parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case undefined:
    case "rules":
      if (parts[1] === "new") return <EditorPage session={session} template={params.get("template")} newId={params.get("id")} />;
      if (parts[1]) return <EditorPage session={session} id={parts[1]} key={parts[1]} />;
      return <RulesPage session={session} />;
    case "live":
      return <LivePage session={session} />;
    case "profiles":
      return <ProfilePage session={session} id={parts[1]} key={parts[1] ?? ""} />;
    case "plugins":
      return <PluginsPage session={session} />;
    case "webhooks":
      return <WebhooksPage session={session} />;
    case "emails":
      return <EmailsPage session={session} />;
    case "schemas":
      return <SchemasPage session={session} type={parts[1]} />;
    case "dlq":
      return <DeadLettersPage session={session} kind={params.get("kind")} type={params.get("type")} />;
    case "admin":
      return <AdminPage session={session} />;
    case "cluster":
      return <ClusterPage />;
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            Nothing lives at <code>{pathname}</code>. <Link href="/rules">Go to the rules.</Link>
          </p>
        </section>
      );
  }
}

function App() {
  const [path, setLocalPath] = useState(location.pathname + location.search);
  const [session, setSession] = useState(undefined);
  setPath = setLocalPath;
  useEffect(() => {
    const onPop = () => setLocalPath(location.pathname + location.search);
    addEventListener("popstate", onPop);
    return () => removeEventListener("popstate", onPop);
  }, []);
  const onLogin = path.startsWith("/login");
  useEffect(() => {
    if (onLogin) return;
    get("/api/session")
      .then((s) => {
        setCsrf(s.csrf);
        setSession(s);
      })
      .catch(() => setSession(null));
  }, [onLogin]);
  if (onLogin) return <Login />;
  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null) return <p class="loading">Signing in…</p>;
  return (
    <Layout session={session} path={path}>
      {page(path, session)}
    </Layout>
  );
}

render(<App />, document.getElementById("app"));
