//! The syncs this provider offers, each run one page at a time.

use serde::{Deserialize, Serialize};

use crate::exports::terapi::provider::sync::{PageRequest, SyncPage, SyncRecord};
use crate::gong::{User, UsersPage};
use crate::terapi::provider::types::ProviderError;
use crate::{api, schema};

pub struct SyncDef {
    pub name: &'static str,
    pub model: &'static str,
    pub description: &'static str,
    pub record_schema: &'static str,
    pub incremental: bool,
}

pub const SYNCS: &[SyncDef] = &[SyncDef {
    name: "users",
    model: "GongUser",
    description: "Every user of the Gong company (GET /v2/users), page by page.",
    record_schema: schema::USER,
    incremental: false,
}];

/// What a cursor-paginated sync needs to resume. Serialised as the opaque
/// checkpoint the host stores.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorCheckpoint {
    cursor: Option<String>,
}

pub fn run_page(request: PageRequest) -> Result<SyncPage, ProviderError> {
    match request.sync.as_str() {
        "users" => users_page(read_checkpoint(request.checkpoint.as_deref())?),
        other => Err(ProviderError::Unknown(format!(
            "no sync named `{other}`; this provider offers: {}",
            SYNCS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn read_checkpoint(raw: Option<&str>) -> Result<CursorCheckpoint, ProviderError> {
    match raw {
        None => Ok(CursorCheckpoint::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            ProviderError::InvalidInput(format!(
                "the checkpoint was not written by this provider ({e}); restart the sync from the beginning"
            ))
        }),
    }
}

fn users_page(checkpoint: CursorCheckpoint) -> Result<SyncPage, ProviderError> {
    let query: Vec<(&str, &str)> = checkpoint.cursor.as_deref().map(|c| ("cursor", c)).into_iter().collect();
    let page: UsersPage = api::get_json("/v2/users", &query)?;
    let next_cursor = page.records.next_cursor().map(str::to_string);
    let records =
        page.users.into_iter().map(|u| to_record(User::from(u), |u| &u.id, |_| None)).collect::<Result<Vec<_>, _>>()?;
    finish_page(records, next_cursor)
}

fn finish_page(records: Vec<SyncRecord>, next_cursor: Option<String>) -> Result<SyncPage, ProviderError> {
    let next_checkpoint = match next_cursor {
        Some(cursor) => Some(to_json(&CursorCheckpoint { cursor: Some(cursor) })?),
        None => None,
    };
    Ok(SyncPage { done: next_checkpoint.is_none(), next_checkpoint, records })
}

fn to_record<T: Serialize>(
    model: T,
    id: impl Fn(&T) -> &String,
    modified_at: impl Fn(&T) -> Option<String>,
) -> Result<SyncRecord, ProviderError> {
    Ok(SyncRecord { id: id(&model).clone(), modified_at: modified_at(&model), json: to_json(&model)? })
}

pub fn to_json<T: Serialize>(value: &T) -> Result<String, ProviderError> {
    serde_json::to_string(value).map_err(|e| ProviderError::BadResponse(format!("could not encode a record: {e}")))
}
