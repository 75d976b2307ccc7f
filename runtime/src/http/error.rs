//! One error shape for every 4xx/5xx: `{"error": {"message", "field"?, "line"?, "column"?}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nudge_rules::{EventError, RuleError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::rulestore::StoreError;

#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// Further facts about the error (`reasons` of an incompatible schema, `warnings` of a
    /// rule refused in strict mode).
    #[serde(flatten)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: field.map(str::to_owned),
            line: None,
            column: None,
            more: serde_json::Map::new(),
        }
    }

    /// Adds a further fact to the error's JSON.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.more.insert(key.to_owned(), value);
        self
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, None, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, message)
    }

    /// An event error, its field prefixed with where the event sits in the body.
    pub fn event(prefix: &str, error: EventError) -> Self {
        Self::bad_request(&format!("{prefix}{}", error.field), error.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(serde_json::json!({ "error": self }))).into_response()
    }
}

impl From<RuleError> for ApiError {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Invalid { field, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some(&field), message)
            }
            RuleError::Compile {
                line,
                column,
                message,
            } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!(
                    "script does not compile at line {line}, column {column}: {message}"
                ),
                field: Some("script".into()),
                line: Some(line),
                column: Some(column),
                more: serde_json::Map::new(),
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, Some("id"), error.to_string())
            }
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, Some("version"), error.to_string())
            }
            StoreError::Invalid(rule) => rule.into(),
            StoreError::Nats(_) => ApiError::unavailable(error.to_string()),
        }
    }
}

/// A value as the JSON of an answer; a value that cannot be one is a 500, never a default.
pub fn to_json(value: impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))
}

/// Parses a JSON body; a failure names the field at fault (`triggers[0]`, `name`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        // An empty key (`{"": 1}`) names nothing: the path (or the body) is named instead.
        let named = message.split('`').nth(1).filter(|name| {
            !name.is_empty()
                && (message.starts_with("missing field") || message.starts_with("unknown field"))
        });
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_owned(),
            (".", None) | ("?", _) | ("", _) => "body".to_owned(),
            (path, Some(name)) if message.starts_with("missing field") => format!("{path}.{name}"),
            (path, _) => path.to_owned(),
        };
        ApiError::bad_request(&field, message)
    })
}

/// The raw request body, with body-limit and read failures answered in the JSON error shape.
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                let message = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => "the body exceeds max_body_bytes".to_owned(),
                    _ => rejection.body_text(),
                };
                ApiError::new(rejection.status(), Some("body"), message)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_rules::RuleSpec;

    #[test]
    fn json_errors_name_the_field() {
        let field = |body: &str| {
            parse_json::<RuleSpec>(body.as_bytes())
                .unwrap_err()
                .field
                .unwrap()
        };
        assert_eq!(field(r#"{"name":"n","script":"1"}"#), "triggers");
        assert_eq!(
            field(r#"{"name":"n","script":"1","triggers":[3]}"#),
            "triggers[0]"
        );
        assert_eq!(
            field(r#"{"name":"n","script":"1","triggers":[],"colour":1}"#),
            "colour"
        );
        assert_eq!(field(r#"{"name":"n","#), "body");
        // Found by the http_json fuzz target: an empty unknown key named no field at all.
        assert_eq!(field(r#"{"name":"n","":1}"#), "body");
    }
}
