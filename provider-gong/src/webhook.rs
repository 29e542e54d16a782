//! Gong has no webhook subscription API: an Automation Rule POSTs
//! `{"callData": {...}, "isTest": bool}` when a call matches it. `callData`
//! has the shape of an extensive call, so it maps to the `calls` sync's
//! `GongCallExtensive` records and lands beside them.

use crate::prelude::*;

use serde_json::Value;

use crate::exports::terapi::provider::webhook::WebhookRecords;
use crate::syncs;
use crate::terapi::provider::types::ProviderError;

pub fn handle(payload: &[u8]) -> Result<WebhookRecords, ProviderError> {
    let bad = |m: &str| ProviderError::InvalidInput(format!("not a Gong automation rule payload: {m}"));
    let value: Value = serde_json::from_slice(payload).map_err(|e| bad(&e.to_string()))?;
    let is_test = value.get("isTest").and_then(Value::as_bool).unwrap_or(false);
    let call = value.get("callData").filter(|c| c.is_object()).ok_or_else(|| bad("no `callData` object"))?;
    let record = syncs::calls_record(call.clone())?;
    Ok(WebhookRecords { model: "GongCallExtensive".into(), records: vec![record], is_test })
}
