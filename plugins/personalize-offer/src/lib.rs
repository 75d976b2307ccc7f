//! personalize-offer: picks the banner or offer a profile should see in a slot, from the event
//! and the profile. Offers are checked in order; the first whose conditions all hold wins.
//!
//! Configuration (the plugin manifest's `config`; [`DEFAULT_CONFIG`] when unset):
//! `{"slot": "home-banner", "offers": [{"id", "banner", "segments"?, "event_types"?,
//! "min_cart_value"?, "max_orders"?}], "fallback": "<offer id>"?}`.
//! `segments` match the profile attribute `segment`; `max_orders` the attribute `orders`;
//! `min_cart_value` the event's `data.value`.
//!
//! As a rule function, `plugin("personalize-offer", #{ segment, cart_value, orders })` returns
//! the chosen offer as a map, or `()` when none applies.

use nudge_sdk::{Action, Event, Plugin, Profile, Result, Value, json};

pub const DEFAULT_CONFIG: &str = r#"{
  "slot": "home-banner",
  "offers": [
    {"id": "vip-early-access", "banner": "Early access to the new collection", "segments": ["vip"]},
    {"id": "free-shipping", "banner": "Free shipping on this cart", "event_types": ["cart.updated"], "min_cart_value": 50},
    {"id": "first-order-10", "banner": "10% off your first order", "max_orders": 0}
  ],
  "fallback": null
}"#;

/// What an offer is checked against.
#[derive(Debug, Default, PartialEq)]
pub struct Context<'a> {
    pub event_type: Option<&'a str>,
    pub segment: Option<&'a str>,
    pub cart_value: Option<f64>,
    pub orders: Option<i64>,
}

fn settings() -> Value {
    let config = nudge_sdk::config();
    if config.get("offers").is_some() {
        config
    } else {
        default_config()
    }
}

fn default_config() -> Value {
    // The constant is valid JSON; a test guards it.
    DEFAULT_CONFIG.parse().unwrap_or(Value::Null)
}

fn holds(offer: &Value, context: &Context) -> bool {
    let in_list =
        |field: &str, value: Option<&str>| match offer.get(field).and_then(Value::as_array) {
            None => true,
            Some(allowed) => value.is_some_and(|v| allowed.iter().any(|a| a.as_str() == Some(v))),
        };
    let min_cart = offer.get("min_cart_value").and_then(Value::as_f64);
    let max_orders = offer.get("max_orders").and_then(Value::as_i64);
    in_list("segments", context.segment)
        && in_list("event_types", context.event_type)
        && min_cart.is_none_or(|min| context.cart_value.is_some_and(|v| v >= min))
        && max_orders.is_none_or(|max| context.orders.unwrap_or(0) <= max)
}

/// The first offer of `config` whose conditions hold, else the fallback offer, if any.
pub fn choose<'c>(config: &'c Value, context: &Context) -> Option<&'c Value> {
    let offers = config.get("offers")?.as_array()?;
    offers
        .iter()
        .find(|offer| holds(offer, context))
        .or_else(|| {
            let fallback = config.get("fallback")?.as_str()?;
            offers.iter().find(|o| o["id"].as_str() == Some(fallback))
        })
}

pub struct PersonalizeOffer;

impl Plugin for PersonalizeOffer {
    fn handle(event: &Event, profile: &Profile) -> Result<Vec<Action>> {
        let config = settings();
        let context = Context {
            event_type: Some(&event.event_type),
            segment: profile.attribute("segment").and_then(Value::as_str),
            cart_value: event.data.get("value").and_then(Value::as_f64),
            orders: profile.attribute("orders").and_then(Value::as_i64),
        };
        let Some(offer) = choose(&config, &context) else {
            return Ok(vec![]);
        };
        let slot = config["slot"].as_str().unwrap_or("home-banner");
        Ok(vec![Action::personalize(
            slot,
            json!({ "offer": offer["id"], "banner": offer["banner"] }),
        )])
    }

    fn call(input: Value) -> Result<Value> {
        let config = settings();
        let context = Context {
            event_type: input.get("event_type").and_then(Value::as_str),
            segment: input.get("segment").and_then(Value::as_str),
            cart_value: input.get("cart_value").and_then(Value::as_f64),
            orders: input.get("orders").and_then(Value::as_i64),
        };
        Ok(choose(&config, &context).cloned().unwrap_or(Value::Null))
    }
}

nudge_sdk::export_plugin!(PersonalizeOffer);

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(event: &Event, profile: &Profile) -> Vec<Value> {
        PersonalizeOffer::handle(event, profile)
            .unwrap()
            .into_iter()
            .map(|a| a.payload["offer"].clone())
            .collect()
    }

    #[test]
    fn default_config_is_valid_json() {
        assert!(default_config()["offers"].is_array());
    }

    #[test]
    fn vip_segment_wins_over_cart_offers() {
        let profile = Profile::new("u1").with_attribute("segment", json!("vip"));
        let event = Event::new("cart.updated", "u1", json!({ "value": 80 }));
        assert_eq!(ids(&event, &profile), vec![json!("vip-early-access")]);
    }

    #[test]
    fn cart_value_threshold_applies_to_carts_only() {
        let profile = Profile::new("u1").with_attribute("orders", json!(3));
        let big = Event::new("cart.updated", "u1", json!({ "value": 50 }));
        let small = Event::new("cart.updated", "u1", json!({ "value": 49.9 }));
        let view = Event::new("product.viewed", "u1", json!({ "value": 500 }));
        assert_eq!(ids(&big, &profile), vec![json!("free-shipping")]);
        assert!(ids(&small, &profile).is_empty());
        assert!(ids(&view, &profile).is_empty());
    }

    #[test]
    fn first_order_offer_for_new_customers() {
        let event = Event::new("product.viewed", "u1", json!({}));
        assert_eq!(
            ids(&event, &Profile::new("u1")),
            vec![json!("first-order-10")]
        );
    }

    #[test]
    fn configured_slot_offers_and_fallback_are_used() {
        nudge_sdk::testing::set_config(json!({
            "slot": "checkout",
            "offers": [{ "id": "a", "banner": "A", "segments": ["gold"] }, { "id": "b", "banner": "B", "segments": ["x"] }],
            "fallback": "b"
        }));
        let actions =
            PersonalizeOffer::handle(&Event::new("x", "u", json!({})), &Profile::new("u")).unwrap();
        assert_eq!(actions[0].target.as_deref(), Some("checkout"));
        assert_eq!(actions[0].payload["offer"], "b");
        nudge_sdk::testing::set_config(json!({}));
    }

    #[test]
    fn call_returns_the_offer_for_rules() {
        let offer = PersonalizeOffer::call(json!({ "segment": "vip" })).unwrap();
        assert_eq!(offer["id"], "vip-early-access");
    }
}
