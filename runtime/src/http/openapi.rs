//! The OpenAPI 3.1 document of the management API, generated from the route table in
//! [`super::routes`], so the document cannot list a route the auth layer does not guard.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    PathsBuilder, Required, SecurityRequirement,
};

use super::routes::{RoutePolicy, api_routes};

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

/// The OpenAPI 3.1 document for every route in [`api_routes`].
pub fn openapi() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in api_routes() {
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
        for route in api_routes() {
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
