//! The logic of plugins/fixtures/tiny as an Extism plug-in: parse the event, return one action.

use extism_pdk::*;
use serde_json::{Value, json};

#[plugin_fn]
pub fn handle(Json(event): Json<Value>) -> FnResult<Json<Value>> {
    Ok(Json(json!([{
        "channel": "push",
        "payload": {
            "title": "Still thinking about it?",
            "product": event["data"]["product_id"],
            "user": event["subject"],
        }
    }])))
}
