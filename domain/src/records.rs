//! Records and pages as the platform keeps them. The runtime converts the
//! contract's (WIT) types into these at its boundary, so the stores and
//! everything above them never depend on the sandbox or on a WIT version.

/// One record of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecord {
    /// Stable identifier, unique within the model.
    pub id: String,
    /// RFC 3339, when the provider says the record last changed.
    pub modified_at: Option<String>,
    /// The record as one JSON object.
    pub json: String,
}

/// One page of a sync run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPage {
    pub records: Vec<SyncRecord>,
    /// Where the next page starts. A full listing leaves it out when `done`;
    /// an incremental one carries the window end it has read up to.
    pub next_checkpoint: Option<String>,
    pub done: bool,
    /// How many records the listing holds, when the provider says.
    pub total_records: Option<u64>,
}

/// What one webhook delivery maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecords {
    /// The model the records belong to (the same one a sync writes).
    pub model: String,
    pub records: Vec<SyncRecord>,
    /// A test delivery: acknowledge it, store nothing.
    pub is_test: bool,
}
