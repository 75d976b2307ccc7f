//! Every `/api` route with its access policy: the one table the auth layer enforces, the
//! OpenAPI document (`openapi.rs`) describes and the authorization-matrix test checks. A route
//! missing here answers 500 rather than running unguarded.

mod authoring;
mod extending;
mod session;

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

/// The routes the UI and scripts call, `/api` and the session's own, by area. The auth layer
/// guards the `/api` ones; `/login` and `/logout` check credentials and the CSRF token
/// themselves.
const AREAS: [&[RoutePolicy]; 3] = [session::ROUTES, authoring::ROUTES, extending::ROUTES];

/// Every route, area by area.
pub fn api_routes() -> impl Iterator<Item = &'static RoutePolicy> {
    AREAS.into_iter().flatten()
}

/// The policy of a matched route.
pub fn policy(method: &str, path: &str) -> Option<&'static RoutePolicy> {
    api_routes().find(|r| r.method == method && r.path == path)
}
