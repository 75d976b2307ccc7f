//! E-mail templates, which an `email(#{ to, template, … })` action names: a subject, an HTML
//! and a text body in MiniJinja syntax (`{{ total }}`, `{{ profile.attributes.name }}`,
//! `{% if … %}`), stored and versioned like rules — the current version per name in
//! `NUDGE_EMAIL_TEMPLATES`, every version in `NUDGE_EMAIL_TEMPLATE_VERSIONS`
//! ([`crate::versioned`]). A template is compiled before it is stored, so a broken one never
//! reaches delivery; rendering is strict (a variable the action and profile do not have is an
//! error, not an empty string) and bounded by `email_render_fuel`.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::versioned::{self, Record, VersionedStore, now_rfc3339};

/// What `PUT /api/email-templates/{name}` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub subject: String,
    /// The HTML body; HTML-escapes every value it prints.
    #[serde(default)]
    pub html: String,
    /// The plain-text body, for clients that show no HTML.
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailTemplate {
    pub name: String,
    #[serde(flatten)]
    pub spec: TemplateSpec,
    pub version: u64,
    pub updated_by: String,
    pub updated_at: String,
}

impl Record for EmailTemplate {
    const NOUN: &'static str = "email template";

    fn key(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u64 {
        self.version
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A part that does not compile or render: `field` is `subject`, `html` or `text`.
    #[error("{field}:{line}: {message}")]
    Syntax {
        field: String,
        line: usize,
        message: String,
    },
}

impl TemplateError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        TemplateError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

pub type Head = versioned::Head<EmailTemplate>;
pub type StoreError = versioned::StoreError<TemplateError>;

/// Bounds on templates and their rendering (the `email_template*` and `email_render_fuel`
/// settings).
#[derive(Debug, Clone, Copy)]
pub struct TemplateLimits {
    pub templates_max: usize,
    pub template_max_bytes: usize,
    pub render_fuel: u64,
}

/// The three parts of an e-mail, rendered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

const PARTS: [&str; 3] = ["subject", "html", "text"];

impl TemplateSpec {
    fn part(&self, field: &str) -> &str {
        match field {
            "subject" => &self.subject,
            "html" => &self.html,
            _ => &self.text,
        }
    }

    /// Checks sizes and that every part compiles; errors name the part and the line.
    pub fn validate(&self, limits: &TemplateLimits) -> Result<(), TemplateError> {
        if self.subject.trim().is_empty() {
            return Err(TemplateError::invalid("subject", "must not be empty"));
        }
        if self.subject.contains(['\r', '\n']) {
            return Err(TemplateError::invalid("subject", "must be one line"));
        }
        if self.html.trim().is_empty() && self.text.trim().is_empty() {
            return Err(TemplateError::invalid(
                "html",
                "an e-mail needs an `html` or a `text` body (or both)",
            ));
        }
        let bytes = self.subject.len() + self.html.len() + self.text.len();
        if bytes > limits.template_max_bytes {
            return Err(TemplateError::invalid(
                "body",
                format!(
                    "the template is {bytes} bytes; the limit is {} (email_template_max_bytes)",
                    limits.template_max_bytes
                ),
            ));
        }
        self.compile(limits.render_fuel).map(|_| ())
    }

    /// Every part compiled, ready to render any number of e-mails; errors name the part and
    /// the line.
    pub fn compile(&self, render_fuel: u64) -> Result<Compiled, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| match name {
            "html" => AutoEscape::Html,
            _ => AutoEscape::None,
        });
        // Counted per render: one e-mail's loops never count against another's.
        env.set_fuel(Some(render_fuel.max(1)));
        for field in PARTS {
            env.add_template_owned(field, self.part(field).to_owned())
                .map_err(|e| syntax(field, &e))?;
        }
        Ok(Compiled { env })
    }

    /// Compiles and renders once (previews); delivery keeps [`Compiled`] per version instead.
    pub fn render(
        &self,
        variables: &Variables,
        render_fuel: u64,
    ) -> Result<Rendered, TemplateError> {
        self.compile(render_fuel)?.render(variables)
    }
}

/// A template's parts compiled (once per version).
pub struct Compiled {
    env: Environment<'static>,
}

impl Compiled {
    /// Renders every part with `variables`. The subject's line breaks are dropped, so no
    /// variable can add a header.
    pub fn render(&self, variables: &Variables) -> Result<Rendered, TemplateError> {
        // Nudge makes the link (base64url and `public_url`): printed as is, not HTML-escaped.
        let context = minijinja::context! {
            unsubscribe_url => minijinja::Value::from_safe_string(variables.unsubscribe_url.clone()),
            ..minijinja::Value::from_serialize(&variables.values)
        };
        let render = |field: &str| {
            self.env
                .get_template(field)
                .and_then(|t| t.render(&context))
                .map_err(|e| syntax(field, &e))
        };
        Ok(Rendered {
            subject: render("subject")?.replace(['\r', '\n'], " "),
            html: render("html")?,
            text: render("text")?,
        })
    }
}

/// What a template sees: the action's payload (`to`, `template` and the rule's variables), then
/// `profile` (`id`, `attributes`, `consent`, `timezone`) and `unsubscribe_url`, which an
/// action cannot override.
pub struct Variables {
    values: Value,
    unsubscribe_url: String,
}

pub fn variables(
    mut action: serde_json::Map<String, Value>,
    profile: &nudge_rules::Profile,
    unsubscribe_url: &str,
) -> Variables {
    let profile = serde_json::json!({
        "id": profile.id,
        "attributes": profile.attributes,
        "consent": profile.consent,
        "timezone": profile.timezone,
    });
    action.insert("profile".into(), profile);
    Variables {
        values: Value::Object(action),
        unsubscribe_url: unsubscribe_url.to_owned(),
    }
}

fn syntax(field: &str, error: &minijinja::Error) -> TemplateError {
    let detail = error
        .detail()
        .map_or_else(|| error.kind().to_string(), str::to_owned);
    let message = match error.kind() {
        minijinja::ErrorKind::OutOfFuel => {
            "rendering took too many steps (email_render_fuel)".to_owned()
        }
        minijinja::ErrorKind::UndefinedError => format!(
            "{detail} (a variable neither the action nor the profile has; `{{{{ name | default(\"…\") }}}}` gives it a default)"
        ),
        _ => detail,
    };
    TemplateError::Syntax {
        field: field.to_owned(),
        line: error.line().unwrap_or(1),
        message,
    }
}

pub fn check_name(name: &str) -> Result<(), TemplateError> {
    nudge_rules::rule::validate_key("name", name).map_err(|e| match e {
        nudge_rules::RuleError::Invalid { message, .. } => TemplateError::invalid("name", message),
        other => TemplateError::invalid("name", other.to_string()),
    })
}

#[derive(Clone)]
pub struct TemplateStore {
    store: VersionedStore<EmailTemplate>,
    limits: TemplateLimits,
}

impl TemplateStore {
    pub fn new(store: VersionedStore<EmailTemplate>, limits: TemplateLimits) -> Self {
        TemplateStore { store, limits }
    }

    pub fn limits(&self) -> &TemplateLimits {
        &self.limits
    }

    pub async fn get(&self, name: &str) -> Result<EmailTemplate, StoreError> {
        check_name(name)?;
        self.store.get(name).await
    }

    pub async fn list(&self) -> Result<Vec<EmailTemplate>, StoreError> {
        self.store.list().await
    }

    /// Writes a new version. `expected_version`, when given, must be the current version.
    pub async fn put(
        &self,
        name: &str,
        spec: TemplateSpec,
        actor: &str,
        expected_version: Option<u64>,
    ) -> Result<EmailTemplate, StoreError> {
        check_name(name)?;
        spec.validate(&self.limits)?;
        let current = self.store.current_for_write(name, expected_version).await?;
        let live = current.as_ref().is_some_and(|(h, _)| !h.deleted);
        if !live && self.list().await?.len() >= self.limits.templates_max {
            return Err(TemplateError::invalid(
                "name",
                format!(
                    "there are {} templates already (email_templates_max)",
                    self.limits.templates_max
                ),
            )
            .into());
        }
        let current_version = current.as_ref().map_or(0, |(h, _)| h.record.version);
        let template = EmailTemplate {
            name: name.to_owned(),
            spec,
            version: current_version + 1,
            updated_by: actor.to_owned(),
            updated_at: now_rfc3339(),
        };
        let head = Head {
            record: template,
            deleted: false,
        };
        self.store
            .commit(head, current.map(|(_, r)| r), current_version)
            .await
    }

    /// Marks a template deleted; its versions stay readable.
    pub async fn delete(&self, name: &str, actor: &str) -> Result<EmailTemplate, StoreError> {
        check_name(name)?;
        let Some((head, revision)) = self.store.head(name).await?.filter(|(h, _)| !h.deleted)
        else {
            return Err(VersionedStore::<EmailTemplate>::not_found(name));
        };
        let previous = head.record.version;
        let mut template = head.record;
        template.version += 1;
        template.updated_by = actor.to_owned();
        template.updated_at = now_rfc3339();
        let head = Head {
            record: template,
            deleted: true,
        };
        self.store.commit(head, Some(revision), previous).await
    }

    /// The newest `limit` versions, newest first.
    pub async fn versions(&self, name: &str, limit: u64) -> Result<Vec<Head>, StoreError> {
        check_name(name)?;
        self.store.versions(name, limit).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMITS: TemplateLimits = TemplateLimits {
        templates_max: 10,
        template_max_bytes: 4_096,
        render_fuel: 10_000,
    };

    /// `values` as a rule would pass them, for the profile `user-1` (`name`: Ada).
    fn vars(values: serde_json::Value) -> Variables {
        let mut profile = nudge_rules::Profile::new("user-1");
        profile.attributes.insert("name".into(), json!("Ada"));
        let serde_json::Value::Object(values) = values else {
            panic!("variables are an object");
        };
        variables(
            values,
            &profile,
            "https://nudge.example/unsubscribe/t?k=1&x=2",
        )
    }

    fn spec(subject: &str, html: &str, text: &str) -> TemplateSpec {
        TemplateSpec {
            subject: subject.into(),
            html: html.into(),
            text: text.into(),
        }
    }

    #[test]
    fn renders_payload_and_profile_variables_escaping_only_html() {
        let template = spec(
            "Your cart: {{ total }} €",
            "<p>Hi {{ profile.attributes.name }}, {{ note }}</p><a href=\"{{ unsubscribe_url }}\">",
            "Hi {{ profile.attributes.name }}, {{ note }}",
        );
        template.validate(&LIMITS).unwrap();
        let variables = vars(json!({"total": 120, "note": "<b>&</b>",
            "profile": "an action cannot replace the profile",
            "unsubscribe_url": "nor the link"}));
        let rendered = template.render(&variables, LIMITS.render_fuel).unwrap();
        assert_eq!(rendered.subject, "Your cart: 120 €");
        assert_eq!(
            rendered.html,
            "<p>Hi Ada, &lt;b&gt;&amp;&lt;&#x2f;b&gt;</p>\
             <a href=\"https://nudge.example/unsubscribe/t?k=1&x=2\">"
        );
        assert_eq!(rendered.text, "Hi Ada, <b>&</b>");
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_the_part_unless_defaulted() {
        let template = spec("Hi", "<p>{{ nope }}</p>", "{{ nope | default('there') }}");
        let error = template.render(&vars(json!({})), 1_000).unwrap_err();
        assert!(
            matches!(&error, TemplateError::Syntax { field, .. } if field == "html"),
            "{error}"
        );
    }

    #[test]
    fn broken_or_oversized_templates_are_refused_naming_the_field() {
        let broken = spec("Hi", "<p>\n{% if %}</p>", "");
        match broken.validate(&LIMITS).unwrap_err() {
            TemplateError::Syntax { field, line, .. } => {
                assert_eq!((field.as_str(), line), ("html", 2))
            }
            other => panic!("{other}"),
        }
        let cases = [
            (spec("", "<p>x</p>", ""), "subject"),
            (spec("a\nBcc: x@example.com", "<p>x</p>", ""), "subject"),
            (spec("Hi", "", " "), "html"),
            (spec("Hi", &"x".repeat(5_000), ""), "body"),
        ];
        for (template, expected) in cases {
            match template.validate(&LIMITS).unwrap_err() {
                TemplateError::Invalid { field, .. } => assert_eq!(field, expected),
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel() {
        let template = spec("Hi", "{% for i in range(100000) %}{{ i }}{% endfor %}", "");
        let error = template.render(&vars(json!({})), 1_000).unwrap_err();
        assert!(error.to_string().contains("email_render_fuel"), "{error}");
    }

    #[test]
    fn a_variable_cannot_add_a_header_through_the_subject() {
        let template = spec("Hi {{ name }}", "x", "");
        let rendered = template
            .render(&vars(json!({"name": "Ada\r\nBcc: all@example.com"})), 1_000)
            .unwrap();
        assert!(!rendered.subject.contains('\n'));
    }
}
