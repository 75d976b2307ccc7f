//! dynamic-pricing: a personal discount for a viewed or carted product, within guardrails.
//!
//! The discount is the sum of the matching signals (segment, stock level, how often the profile
//! viewed the product), then bounded: never more than `max_discount_pct`, never below `floor`
//! (an absolute minimum, and `cost × (1 + min_margin_pct/100)` when the event carries `cost`),
//! never above `ceiling` (the list price unless set lower). No action when the bounded price
//! equals the list price.
//!
//! Events need `data.product_id` and `data.price`; `data.cost`, `data.stock`, `data.views`
//! are optional. Configuration ([`DEFAULT_CONFIG`] when unset): `{"max_discount_pct",
//! "min_margin_pct", "floor", "ceiling"?, "segment_discount_pct": {"<segment>": pct},
//! "overstock_units", "overstock_discount_pct", "repeat_views", "repeat_view_discount_pct"}`.
//!
//! As a rule function, `plugin("dynamic-pricing", #{ price, cost, stock, views, segment })`
//! returns `#{ price, discount_pct, reasons }`.

use nudge_sdk::{Action, Event, Plugin, Profile, Result, Value, json};

pub const DEFAULT_CONFIG: &str = r#"{
  "max_discount_pct": 30,
  "min_margin_pct": 10,
  "floor": 1.0,
  "segment_discount_pct": {"vip": 10, "lapsed": 15},
  "overstock_units": 500,
  "overstock_discount_pct": 10,
  "repeat_views": 3,
  "repeat_view_discount_pct": 5
}"#;

/// What the price depends on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quote {
    pub list_price: f64,
    pub cost: Option<f64>,
    pub stock: Option<f64>,
    pub views: Option<f64>,
    pub segment: Option<String>,
}

/// A bounded price and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub price: f64,
    pub discount_pct: f64,
    pub reasons: Vec<String>,
}

fn settings() -> Value {
    let config = nudge_sdk::config();
    if config.get("max_discount_pct").is_some() {
        config
    } else {
        DEFAULT_CONFIG.parse().unwrap_or(Value::Null)
    }
}

fn number(config: &Value, field: &str) -> Option<f64> {
    config.get(field).and_then(Value::as_f64)
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// Prices `quote` under `config`'s signals and guardrails.
pub fn price(config: &Value, quote: &Quote) -> Result<Priced> {
    if !(quote.list_price.is_finite() && quote.list_price > 0.0) {
        return Err("price must be a positive number".into());
    }
    let mut pct = 0.0;
    let mut reasons = Vec::new();
    if let Some(segment) = &quote.segment
        && let Some(extra) = config["segment_discount_pct"]
            .get(segment)
            .and_then(Value::as_f64)
    {
        pct += extra;
        reasons.push(format!("segment {segment}"));
    }
    if let (Some(stock), Some(limit)) = (quote.stock, number(config, "overstock_units"))
        && stock >= limit
    {
        pct += number(config, "overstock_discount_pct").unwrap_or(0.0);
        reasons.push("overstock".to_owned());
    }
    if let (Some(views), Some(limit)) = (quote.views, number(config, "repeat_views"))
        && views >= limit
    {
        pct += number(config, "repeat_view_discount_pct").unwrap_or(0.0);
        reasons.push("repeat views".to_owned());
    }
    let max_pct = number(config, "max_discount_pct")
        .unwrap_or(0.0)
        .clamp(0.0, 100.0);
    if pct > max_pct {
        pct = max_pct;
        reasons.push("max_discount_pct".to_owned());
    }
    let mut floor = number(config, "floor").unwrap_or(0.0);
    if let Some(cost) = quote.cost {
        floor = floor.max(cost * (1.0 + number(config, "min_margin_pct").unwrap_or(0.0) / 100.0));
    }
    let ceiling = number(config, "ceiling").map_or(quote.list_price, |c| c.min(quote.list_price));
    let mut amount = quote.list_price * (1.0 - pct / 100.0);
    if amount < floor {
        amount = floor;
        reasons.push("floor".to_owned());
    }
    if amount > ceiling {
        amount = ceiling;
        reasons.push("ceiling".to_owned());
    }
    let amount = cents(amount);
    Ok(Priced {
        price: amount,
        discount_pct: cents((1.0 - amount / quote.list_price) * 100.0),
        reasons,
    })
}

fn quote_from(data: &Value, segment: Option<&str>) -> Result<Quote> {
    Ok(Quote {
        list_price: data["price"]
            .as_f64()
            .ok_or("data.price must be a number")?,
        cost: data["cost"].as_f64(),
        stock: data["stock"].as_f64(),
        views: data["views"].as_f64(),
        segment: segment.map(str::to_owned),
    })
}

pub struct DynamicPricing;

impl Plugin for DynamicPricing {
    fn handle(event: &Event, profile: &Profile) -> Result<Vec<Action>> {
        let product = match &event.data["product_id"] {
            Value::String(id) => id.clone(),
            Value::Number(id) => id.to_string(),
            _ => return Err("data.product_id is missing".into()),
        };
        let segment = profile.attribute("segment").and_then(Value::as_str);
        let priced = price(&settings(), &quote_from(&event.data, segment)?)?;
        if priced.discount_pct <= 0.0 {
            return Ok(vec![]);
        }
        Ok(vec![Action::price(
            &product,
            json!({
                "price": priced.price,
                "list_price": event.data["price"],
                "discount_pct": priced.discount_pct,
                "reasons": priced.reasons,
            }),
        )])
    }

    fn call(input: Value) -> Result<Value> {
        let priced = price(&settings(), &quote_from(&input, input["segment"].as_str())?)?;
        Ok(
            json!({ "price": priced.price, "discount_pct": priced.discount_pct, "reasons": priced.reasons }),
        )
    }
}

nudge_sdk::export_plugin!(DynamicPricing);

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Value {
        DEFAULT_CONFIG.parse().unwrap()
    }

    fn quote(list_price: f64) -> Quote {
        Quote {
            list_price,
            ..Quote::default()
        }
    }

    #[test]
    fn signals_add_up() {
        let q = Quote {
            segment: Some("vip".into()),
            views: Some(3.0),
            ..quote(100.0)
        };
        let p = price(&defaults(), &q).unwrap();
        assert_eq!((p.price, p.discount_pct), (85.0, 15.0));
        assert_eq!(p.reasons, ["segment vip", "repeat views"]);
    }

    #[test]
    fn discount_never_exceeds_the_maximum() {
        let q = Quote {
            segment: Some("lapsed".into()),
            stock: Some(900.0),
            views: Some(9.0),
            ..quote(100.0)
        };
        let mut config = defaults();
        config["max_discount_pct"] = json!(25);
        let p = price(&config, &q).unwrap();
        assert_eq!(p.discount_pct, 25.0);
        assert!(p.reasons.contains(&"max_discount_pct".to_owned()));
    }

    #[test]
    fn margin_floor_holds_the_price_up() {
        let q = Quote {
            segment: Some("lapsed".into()),
            cost: Some(80.0),
            ..quote(100.0)
        };
        let p = price(&defaults(), &q).unwrap();
        assert_eq!(p.price, 88.0);
        assert_eq!(p.reasons.last().unwrap(), "floor");
    }

    #[test]
    fn ceiling_caps_the_price() {
        let mut config = defaults();
        config["ceiling"] = json!(90.0);
        let p = price(&config, &quote(100.0)).unwrap();
        assert_eq!((p.price, p.discount_pct), (90.0, 10.0));
    }

    #[test]
    fn no_signal_no_action_and_bad_input_is_an_error() {
        let view = Event::new(
            "product.viewed",
            "u",
            json!({ "product_id": "p1", "price": 20 }),
        );
        assert!(
            DynamicPricing::handle(&view, &Profile::new("u"))
                .unwrap()
                .is_empty()
        );
        let broken = Event::new(
            "product.viewed",
            "u",
            json!({ "product_id": "p1", "price": "x" }),
        );
        assert!(DynamicPricing::handle(&broken, &Profile::new("u")).is_err());
        assert!(price(&defaults(), &quote(-1.0)).is_err());
    }

    #[test]
    fn handle_emits_a_price_action() {
        let view = Event::new(
            "product.viewed",
            "u",
            json!({ "product_id": "p1", "price": 40, "views": 5 }),
        );
        let actions = DynamicPricing::handle(&view, &Profile::new("u")).unwrap();
        assert_eq!(actions[0].target.as_deref(), Some("p1"));
        assert_eq!(actions[0].payload["price"], 38.0);
    }
}
