// The sign-in page (/login): a plain form posting username and password to /login, which sets
// the session cookie and redirects back.

export function Login() {
  const params = new URLSearchParams(location.search);
  const error = params.get("error");
  const next = params.get("next") ?? "/rules";
  return (
    <main class="login" id="main">
      <form method="post" action="/login" class="card" aria-labelledby="login-title">
        <h1 id="login-title">Sign in to nudge</h1>
        {error && (
          <p class="error" role="alert" data-testid="login-error">
            {error === "invalid"
              ? "Wrong user name or password."
              : error === "throttled"
                ? "Too many attempts for this user: wait a minute and try again."
                : "Enter your user name and password."}
          </p>
        )}
        <label>
          User name
          <input name="username" autocomplete="username" required autofocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required />
        </label>
        <input type="hidden" name="next" value={next} />
        <button type="submit">Sign in</button>
      </form>
    </main>
  );
}
