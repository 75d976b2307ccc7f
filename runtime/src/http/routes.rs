//! Every `/api` route with its access policy: the one table the auth layer enforces, the
//! OpenAPI document describes and the authorization-matrix test checks. A route missing here
//! answers 500 rather than running unguarded.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    PathsBuilder, Required, SecurityRequirement,
};

use crate::access::Role;

/// Who may call a route: `None` = anyone, even signed out.
pub struct RoutePolicy {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Option<Role>,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Media type of the request body, if it takes one.
    pub body: Option<&'static str>,
}

const JSON: Option<&str> = Some("application/json");

const fn route(
    method: &'static str,
    path: &'static str,
    role: Option<Role>,
    tag: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
) -> RoutePolicy {
    RoutePolicy {
        method,
        path,
        role,
        tag,
        summary,
        body,
    }
}

use Role::{Admin, Developer, Marketer, Viewer};

/// The routes the UI and scripts call, `/api` and the session's own. The auth layer guards the
/// `/api` ones; `/login` and `/logout` check credentials and the CSRF token themselves.
pub const API_ROUTES: &[RoutePolicy] = &[
    route(
        "POST",
        "/login",
        None,
        "access",
        "Sign in: form fields or JSON `username`, `password`; sets the `nudge_session` cookie (form: redirects to `next`; JSON: the session with its CSRF token); 401 on wrong credentials, 429 past login_attempts_per_minute",
        Some("application/x-www-form-urlencoded"),
    ),
    route(
        "POST",
        "/logout",
        None,
        "access",
        "Sign out: ends the browser session; needs the session's X-CSRF-Token (403 without)",
        None,
    ),
    route(
        "GET",
        "/api/openapi.json",
        None,
        "meta",
        "This OpenAPI document",
        None,
    ),
    route(
        "GET",
        "/api/session",
        Some(Viewer),
        "access",
        "Who is signed in: user, role, CSRF token; deployment facts: review_required, channels",
        None,
    ),
    route(
        "GET",
        "/api/rules",
        Some(Viewer),
        "rules",
        "List rules",
        None,
    ),
    route(
        "GET",
        "/api/rules/{id}",
        Some(Viewer),
        "rules",
        "Get a rule",
        None,
    ),
    route(
        "PUT",
        "/api/rules/{id}",
        Some(Marketer),
        "rules",
        "Create or change a rule (a new version; a draft in review mode); 422 with line/column for a script that does not compile",
        JSON,
    ),
    route(
        "PATCH",
        "/api/rules/{id}",
        Some(Marketer),
        "rules",
        "Enable or disable a rule: {\"enabled\": bool}",
        JSON,
    ),
    route(
        "DELETE",
        "/api/rules/{id}",
        Some(Marketer),
        "rules",
        "Delete a rule (its versions stay readable)",
        None,
    ),
    route(
        "GET",
        "/api/rules/{id}/versions",
        Some(Viewer),
        "rules",
        "List a rule's versions, newest first",
        None,
    ),
    route(
        "GET",
        "/api/rules/{id}/versions/{version}",
        Some(Viewer),
        "rules",
        "Get one version of a rule",
        None,
    ),
    route(
        "POST",
        "/api/rules/{id}/restore",
        Some(Marketer),
        "rules",
        "Make an older version current again: {\"version\": n}",
        JSON,
    ),
    route(
        "POST",
        "/api/rules/{id}/check",
        Some(Marketer),
        "rules",
        "Compile a draft rule without saving: errors with line and column",
        JSON,
    ),
    route(
        "POST",
        "/api/rules/{id}/test",
        Some(Marketer),
        "rules",
        "Dry-run the rule (or a draft) on an event and profile: actions and decision trace",
        JSON,
    ),
    route(
        "POST",
        "/api/rules/{id}/backtest",
        Some(Marketer),
        "rules",
        "Replay stored events through the rule (or a draft): matches, actions, suppressions",
        JSON,
    ),
    route(
        "GET",
        "/api/rules/{id}/samples",
        Some(Viewer),
        "rules",
        "Sample events pinned to the rule",
        None,
    ),
    route(
        "PUT",
        "/api/rules/{id}/samples",
        Some(Marketer),
        "rules",
        "Replace the sample events pinned to the rule",
        JSON,
    ),
    route(
        "GET",
        "/api/rules/{id}/draft",
        Some(Viewer),
        "review",
        "The change waiting for review, if any",
        None,
    ),
    route(
        "DELETE",
        "/api/rules/{id}/draft",
        Some(Marketer),
        "review",
        "Withdraw or reject the change waiting for review",
        None,
    ),
    route(
        "POST",
        "/api/rules/{id}/draft/approve",
        Some(Developer),
        "review",
        "Approve the change waiting for review (not its author): it becomes the new version",
        None,
    ),
    route(
        "GET",
        "/api/drafts",
        Some(Viewer),
        "review",
        "Changes waiting for review",
        None,
    ),
    route(
        "GET",
        "/api/stats",
        Some(Viewer),
        "rules",
        "Per-rule and per-plugin figures summed over every instance: fired, errors, last fired, calls, latency",
        None,
    ),
    route(
        "GET",
        "/api/cluster",
        Some(Viewer),
        "cluster",
        "Partitions and instances: who owns which partition, each partition's committed position, lag and last checkpoint",
        None,
    ),
    route(
        "GET",
        "/api/templates",
        Some(Viewer),
        "rules",
        "Rule templates to start from",
        None,
    ),
    route(
        "GET",
        "/api/events/recent",
        Some(Viewer),
        "events",
        "Recent stored events (?type=, ?limit=) to test rules with",
        None,
    ),
    route(
        "GET",
        "/api/live",
        Some(Viewer),
        "events",
        "Server-sent events: events arriving and actions fired (?rule=, ?channel=, ?profile=)",
        None,
    ),
    route(
        "GET",
        "/api/profiles/{id}",
        Some(Viewer),
        "profiles",
        "A profile's state",
        None,
    ),
    route(
        "GET",
        "/api/profiles/{id}/trace",
        Some(Viewer),
        "profiles",
        "A profile's recent decisions, newest first",
        None,
    ),
    route(
        "GET",
        "/api/plugins",
        Some(Viewer),
        "plugins",
        "List plugins",
        None,
    ),
    route(
        "GET",
        "/api/plugins/{name}",
        Some(Viewer),
        "plugins",
        "Get a plugin",
        None,
    ),
    route(
        "PUT",
        "/api/plugins/{name}",
        Some(Developer),
        "plugins",
        "Upload a plugin (.wasm bytes, or multipart with a manifest); rejects what is not a valid plugin",
        Some("application/wasm"),
    ),
    route(
        "PATCH",
        "/api/plugins/{name}",
        Some(Developer),
        "plugins",
        "Change a plugin's manifest (enabled, triggers, config, limits)",
        JSON,
    ),
    route(
        "DELETE",
        "/api/plugins/{name}",
        Some(Developer),
        "plugins",
        "Delete a plugin",
        None,
    ),
    route(
        "GET",
        "/api/plugins/{name}/versions",
        Some(Viewer),
        "plugins",
        "List a plugin's versions",
        None,
    ),
    route(
        "POST",
        "/api/plugins/{name}/test",
        Some(Developer),
        "plugins",
        "Dry-run a plugin on an event or input",
        JSON,
    ),
    route(
        "GET",
        "/api/dlq",
        Some(Developer),
        "dead letters",
        "Dead letters with their reason and payload, newest first",
        None,
    ),
    route(
        "POST",
        "/api/dlq/{sequence}/redrive",
        Some(Developer),
        "dead letters",
        "Publish a dead letter's event again and remove it from the DLQ",
        None,
    ),
    route(
        "POST",
        "/api/dlq/redrive",
        Some(Developer),
        "dead letters",
        "Re-drive every dead letter (up to dlq_redrive_max)",
        None,
    ),
    route(
        "GET",
        "/api/users",
        Some(Admin),
        "access",
        "List users",
        None,
    ),
    route(
        "POST",
        "/api/users",
        Some(Admin),
        "access",
        "Create a user: username, password, role",
        JSON,
    ),
    route(
        "DELETE",
        "/api/users/{username}",
        Some(Admin),
        "access",
        "Remove a user (not yourself); their browser sessions end within a minute",
        None,
    ),
    route(
        "GET",
        "/api/tokens",
        Some(Admin),
        "access",
        "List API tokens (never their secrets)",
        None,
    ),
    route(
        "POST",
        "/api/tokens",
        Some(Admin),
        "access",
        "Create an API token: name, role; the token is answered once",
        JSON,
    ),
    route(
        "DELETE",
        "/api/tokens/{id}",
        Some(Admin),
        "access",
        "Revoke an API token",
        None,
    ),
    route(
        "GET",
        "/api/audit",
        Some(Admin),
        "access",
        "The audit log, newest first (?limit=, ?before=)",
        None,
    ),
    route(
        "GET",
        "/api/webhooks",
        Some(Viewer),
        "webhooks",
        "List webhook endpoints (secrets as fingerprints)",
        None,
    ),
    route(
        "GET",
        "/api/webhooks/{name}",
        Some(Viewer),
        "webhooks",
        "Get a webhook endpoint (secrets as fingerprints)",
        None,
    ),
    route(
        "PUT",
        "/api/webhooks/{name}",
        Some(Developer),
        "webhooks",
        "Create (201, answering its `secret`, whsec_…, once) or change (200) a webhook endpoint: `url`, optional `timeout_ms`, `headers`, `rate_per_s`, `enabled`",
        JSON,
    ),
    route(
        "DELETE",
        "/api/webhooks/{name}",
        Some(Developer),
        "webhooks",
        "Delete a webhook endpoint",
        None,
    ),
    route(
        "POST",
        "/api/webhooks/{name}/rotate",
        Some(Developer),
        "webhooks",
        "A new signing secret, answered once; the previous ones keep signing for webhook_secret_overlap_s",
        None,
    ),
];

/// The policy of a matched route.
pub fn policy(method: &str, path: &str) -> Option<&'static RoutePolicy> {
    API_ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
}

fn http_method(method: &str) -> HttpMethod {
    match method {
        "PUT" => HttpMethod::Put,
        "POST" => HttpMethod::Post,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn operation(route: &RoutePolicy) -> utoipa::openapi::path::Operation {
    let role_text = route.role.map_or("anyone".to_owned(), |r| {
        format!("role `{}` or above", r.as_str())
    });
    let mut op = OperationBuilder::new()
        .summary(Some(route.summary))
        .description(Some(format!("Allowed to: {role_text}.")))
        .tag(route.tag)
        .operation_id(Some(format!(
            "{} {}",
            route.method.to_lowercase(),
            route.path
        )))
        .response("200", ResponseBuilder::new().description("Success").build())
        .response(
            "400",
            ResponseBuilder::new()
                .description("Bad input: `{\"error\": {\"message\", \"field\"}}`")
                .build(),
        );
    if route.role.is_some() {
        op = op
            .response(
                "401",
                ResponseBuilder::new()
                    .description("No valid credential (missing, wrong, revoked or expired)")
                    .build(),
            )
            .response(
                "403",
                ResponseBuilder::new()
                    .description(
                        "The role does not allow this, or a session request lacks X-CSRF-Token",
                    )
                    .build(),
            )
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::new("session", Vec::<String>::new()));
    }
    for segment in route.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .build(),
            );
        }
    }
    if let Some(media) = route.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content(media, ContentBuilder::new().build())
                .required(Some(Required::True))
                .build(),
        ));
    }
    op.build()
}

/// The OpenAPI 3.1 document for every route in [`API_ROUTES`].
pub fn openapi() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in API_ROUTES {
        paths = paths.path(
            route.path,
            PathItem::new(http_method(route.method), operation(route)),
        );
    }
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("nudge management API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Rules, plugins, profiles, dead letters, users and tokens. Authenticate with \
                     `Authorization: Bearer <token>` or, from the browser, the session cookie \
                     plus `X-CSRF-Token` on every state change.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
                )
                .security_scheme(
                    "session",
                    SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("nudge_session"))),
                )
                .build(),
        ))
        .build();
    doc.openapi = utoipa::openapi::OpenApiVersion::Version31;
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut count = 0;
        for route in API_ROUTES {
            let op = &doc["paths"][route.path][route.method.to_lowercase()];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            count += 1;
        }
        let listed: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(listed, count);
    }
}
