//! push-compose: composes a localized push notification from templates, per event type.
//!
//! Configuration (the manifest's `config`; [`DEFAULT_CONFIG`] when unset):
//! `{"fallback_locale": "en", "templates": {"<event type>": {"<locale>": {"title", "body"}}}}`.
//! The locale comes from the profile attribute `locale` (`de-AT` tries `de-AT`, then `de`, then
//! the fallback). `{{field}}` in a template is replaced by the event's `data.field`,
//! `{{profile.name}}` by a profile attribute; a missing value renders as the empty string, and a
//! template that renders an empty title is not sent. Profiles that opted out of push get nothing.
//!
//! As a rule function, `plugin("push-compose", #{ template, locale, data })` returns the rendered
//! `#{ title, body }`.

use nudge_sdk::{Action, Event, Map, Plugin, Profile, Result, Value, json};

pub const DEFAULT_CONFIG: &str = r#"{
  "fallback_locale": "en",
  "templates": {
    "cart.updated": {
      "en": {"title": "{{profile.first_name}}, your cart is waiting", "body": "{{items}} items, {{value}} {{currency}} - complete your order."},
      "de": {"title": "{{profile.first_name}}, dein Warenkorb wartet", "body": "{{items}} Artikel, {{value}} {{currency}} - jetzt bestellen."},
      "fr": {"title": "{{profile.first_name}}, votre panier vous attend", "body": "{{items}} articles, {{value}} {{currency}} - finalisez votre commande."}
    },
    "order.shipped": {
      "en": {"title": "Your order is on its way", "body": "Order {{order_id}} ships with {{carrier}}."},
      "de": {"title": "Deine Bestellung ist unterwegs", "body": "Bestellung {{order_id}} kommt mit {{carrier}}."}
    }
  }
}"#;

fn settings() -> Value {
    let config = nudge_sdk::config();
    if config.get("templates").is_some() {
        config
    } else {
        DEFAULT_CONFIG.parse().unwrap_or(Value::Null)
    }
}

/// The template set for `locale`: exact tag, then its language, then `fallback`.
pub fn pick<'c>(templates: &'c Value, locale: &str, fallback: &str) -> Option<&'c Value> {
    let language = locale.split(['-', '_']).next().unwrap_or(locale);
    [locale, language, fallback]
        .into_iter()
        .find_map(|tag| templates.get(tag))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Replaces `{{field}}` with `data.field` and `{{profile.name}}` with the attribute `name`.
pub fn render(template: &str, data: &Value, attributes: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = rest[open + 2..open + close].trim();
        let value = match key.strip_prefix("profile.") {
            Some(name) => attributes.get(name).map(text),
            None => data.get(key).map(text),
        };
        out.push_str(&value.unwrap_or_default());
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

fn compose(set: &Value, data: &Value, attributes: &Map<String, Value>) -> Option<Value> {
    let title = render(set.get("title")?.as_str()?, data, attributes);
    let title = title.trim_start_matches([',', ' ']).to_owned();
    if title.is_empty() {
        return None;
    }
    let body = render(set["body"].as_str().unwrap_or(""), data, attributes);
    Some(json!({ "title": title, "body": body }))
}

pub struct PushCompose;

impl Plugin for PushCompose {
    fn handle(event: &Event, profile: &Profile) -> Result<Vec<Action>> {
        if !profile.consents_to("push") {
            return Ok(vec![]);
        }
        let config = settings();
        let Some(templates) = config["templates"].get(&event.event_type) else {
            return Ok(vec![]);
        };
        let locale = profile
            .attribute("locale")
            .and_then(Value::as_str)
            .unwrap_or("");
        let fallback = config["fallback_locale"].as_str().unwrap_or("en");
        let Some(set) = pick(templates, locale, fallback) else {
            nudge_sdk::log::warn(format!(
                "no template for {} in {locale} or {fallback}",
                event.event_type
            ));
            return Ok(vec![]);
        };
        let Some(mut message) = compose(set, &event.data, &profile.attributes) else {
            return Ok(vec![]);
        };
        message["locale"] = json!(if templates.get(locale).is_some() {
            locale
        } else {
            fallback
        });
        Ok(vec![Action::push(message)])
    }

    fn call(input: Value) -> Result<Value> {
        let config = settings();
        let name = input["template"]
            .as_str()
            .ok_or("input.template must be a string")?;
        let templates = config["templates"]
            .get(name)
            .ok_or_else(|| format!("no template named {name}"))?;
        let fallback = config["fallback_locale"].as_str().unwrap_or("en");
        let locale = input["locale"].as_str().unwrap_or(fallback);
        let set = pick(templates, locale, fallback).ok_or("no template for this locale")?;
        Ok(compose(set, &input["data"], &Map::new()).unwrap_or(Value::Null))
    }
}

nudge_sdk::export_plugin!(PushCompose);

#[cfg(test)]
mod tests {
    use super::*;

    fn cart() -> Event {
        Event::new(
            "cart.updated",
            "u1",
            json!({ "items": 3, "value": 59.5, "currency": "EUR" }),
        )
    }

    #[test]
    fn renders_in_the_profiles_language() {
        let profile = Profile::new("u1")
            .with_attribute("locale", json!("de-AT"))
            .with_attribute("first_name", json!("Lena"));
        let actions = PushCompose::handle(&cart(), &profile).unwrap();
        assert_eq!(actions[0].payload["title"], "Lena, dein Warenkorb wartet");
        assert_eq!(
            actions[0].payload["body"],
            "3 Artikel, 59.5 EUR - jetzt bestellen."
        );
    }

    #[test]
    fn unknown_locale_falls_back_and_missing_names_leave_no_stray_comma() {
        let profile = Profile::new("u1").with_attribute("locale", json!("ja"));
        let actions = PushCompose::handle(&cart(), &profile).unwrap();
        assert_eq!(actions[0].payload["title"], "your cart is waiting");
        assert_eq!(actions[0].payload["locale"], "en");
    }

    #[test]
    fn opted_out_profiles_and_unknown_event_types_get_nothing() {
        let mut opted_out = Profile::new("u1");
        opted_out.consent.insert("push".into(), json!(false));
        assert!(PushCompose::handle(&cart(), &opted_out).unwrap().is_empty());
        let other = Event::new("product.viewed", "u1", json!({}));
        assert!(
            PushCompose::handle(&other, &Profile::new("u1"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn render_leaves_unclosed_braces_alone() {
        assert_eq!(render("a {{x", &json!({ "x": 1 }), &Map::new()), "a {{x");
    }

    #[test]
    fn call_renders_a_named_template() {
        let out = PushCompose::call(json!({
            "template": "order.shipped", "locale": "de",
            "data": { "order_id": "A-1", "carrier": "DHL" }
        }))
        .unwrap();
        assert_eq!(out["body"], "Bestellung A-1 kommt mit DHL.");
        assert!(PushCompose::call(json!({ "template": "nope" })).is_err());
    }
}
