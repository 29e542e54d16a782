//! The syncs this provider offers, each run one page at a time from an
//! opaque checkpoint the host stores.
//!
//! Date-windowed syncs are incremental: the checkpoint holds the window and
//! the cursor inside it; when a window is finished, the checkpoint keeps its
//! end (`since`), and the next run fetches only from there to now. A first
//! run starts `backfill-days` ago (default 30), or at `modified-since`.

use crate::prelude::*;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::catalog::not_available;
use crate::exports::terapi::provider::sync::{PageRequest, SyncOptions, SyncPage, SyncRecord};
use crate::gong::{self, User, UsersPage};
use crate::terapi::provider::types::{Method, ProviderError};
use crate::{api, schema, time};

pub const DEFAULT_BACKFILL_DAYS: u32 = 30;

/// How far back each incremental run of `calls` and `call-transcripts`
/// reaches before the end of the last one. Gong files a call under its start
/// time, but the call appears (and its transcript and CRM context fill in)
/// only once processed, hours or days later: a window that ended before
/// that would miss it for good. Re-read records are upserted, so the
/// overlap costs requests, not duplicates. Nango's Gong syncs use 14 days.
pub const DEFAULT_OVERLAP_DAYS: u32 = 14;

#[derive(Clone, Copy)]
enum Source {
    /// GET, cursor in the query.
    Get,
    /// POST with `filter`; the cursor goes in the body beside the same filter.
    Post,
}

#[derive(Clone, Copy)]
enum Window {
    None,
    /// `fromDateTime`/`toDateTime` (RFC 3339), in the query or `filter`.
    DateTime,
    /// `reviewFromDate`/`reviewToDate` (YYYY-MM-DD) in `filter`: a scorecard
    /// is answered days after its call, so windowing by call date would miss
    /// reviews of calls from before the last run.
    ReviewDate,
}

pub struct SyncDef {
    pub name: &'static str,
    pub model: &'static str,
    pub description: &'static str,
    pub record_schema: &'static str,
    source: Source,
    path: &'static str,
    /// Key of the item list in Gong's answer.
    items: &'static str,
    /// Dotted path of each item's id.
    id: &'static str,
    /// Dotted path of the time the record last changed, if Gong gives one.
    modified: Option<&'static str>,
    window: Window,
    /// Extra body fields resent with every page (e.g. contentSelector).
    body: Option<fn() -> Value>,
    /// Each run re-reads this many days before the last one's end.
    overlap_days: u32,
    /// 404/401 means the account's plan lacks the product.
    plan_gated: bool,
}

impl SyncDef {
    /// The OAuth scopes its requests take (permission profiles list the
    /// workspaces first).
    pub fn scopes(&self) -> Vec<String> {
        let method = match self.source {
            Source::Get => "GET",
            Source::Post => "POST",
        };
        let mut scopes: Vec<String> =
            crate::gong::scope_for(method, self.path).map(str::to_string).into_iter().collect();
        if self.name == "permission-profiles" {
            scopes.extend(crate::gong::scope_for("GET", "/v2/workspaces").map(str::to_string));
        }
        scopes
    }

    pub fn incremental(&self) -> bool {
        !matches!(self.window, Window::None)
    }

    /// Calls, transcripts and scorecards arrive all day and are read by
    /// date window, so hourly is cheap; users and settings change rarely and
    /// full syncs re-read everything, so daily keeps well inside Gong's
    /// 10,000 requests a day per company.
    pub fn frequency_secs(&self) -> u32 {
        if self.incremental() { 3_600 } else { 86_400 }
    }

    #[cfg(test)]
    pub fn path(&self) -> &'static str {
        self.path
    }

    #[cfg(test)]
    pub fn reads_by_post(&self) -> bool {
        matches!(self.source, Source::Post)
    }
}

fn extensive_selector() -> Value {
    json!({
        "contentSelector": {
            "context": "Extended",
            "exposedFields": {
                "parties": true,
                "content": { "brief": true, "outline": true, "topics": true, "trackers": true },
                "collaboration": { "publicComments": true },
                "media": false
            }
        }
    })
}

const fn def(
    name: &'static str,
    model: &'static str,
    description: &'static str,
    source: Source,
    path: &'static str,
    items: &'static str,
    id: &'static str,
) -> SyncDef {
    SyncDef {
        name,
        model,
        description,
        record_schema: schema::GONG_RECORD,
        source,
        path,
        items,
        id,
        modified: None,
        window: Window::None,
        body: None,
        overlap_days: 0,
        plan_gated: false,
    }
}

pub const SYNCS: &[SyncDef] = &[
    SyncDef {
        record_schema: schema::USER,
        ..def(
            "users",
            "GongUser",
            "Every user of the company (GET /v2/users).",
            Source::Get,
            "/v2/users",
            "users",
            "id",
        )
    },
    SyncDef {
        record_schema: schema::CALL_EXTENSIVE,
        modified: Some("metaData.started"),
        window: Window::DateTime,
        body: Some(extensive_selector),
        overlap_days: DEFAULT_OVERLAP_DAYS,
        ..def(
            "calls",
            "GongCallExtensive",
            "Calls by date window with parties, content and CRM context (deals), incremental (POST /v2/calls/extensive).",
            Source::Post,
            "/v2/calls/extensive",
            "calls",
            "metaData.id",
        )
    },
    SyncDef {
        window: Window::DateTime,
        overlap_days: DEFAULT_OVERLAP_DAYS,
        ..def(
            "call-transcripts",
            "GongCallTranscript",
            "Transcripts of calls by date window, incremental (POST /v2/calls/transcript).",
            Source::Post,
            "/v2/calls/transcript",
            "callTranscripts",
            "callId",
        )
    },
    SyncDef {
        modified: Some("updated"),
        ..def(
            "scorecards",
            "GongScorecard",
            "Scorecard definitions (GET /v2/settings/scorecards).",
            Source::Get,
            "/v2/settings/scorecards",
            "scorecards",
            "scorecardId",
        )
    },
    SyncDef {
        window: Window::ReviewDate,
        modified: Some("reviewTime"),
        ..def(
            "answered-scorecards",
            "GongAnsweredScorecard",
            "Answered scorecards by review date, incremental (POST /v2/stats/activity/scorecards).",
            Source::Post,
            "/v2/stats/activity/scorecards",
            "answeredScorecards",
            "answeredScorecardId",
        )
    },
    SyncDef {
        modified: Some("updated"),
        ..def(
            "trackers",
            "GongTracker",
            "Keyword tracker definitions (GET /v2/settings/trackers).",
            Source::Get,
            "/v2/settings/trackers",
            "keywordTrackers",
            "trackerId",
        )
    },
    def(
        "workspaces",
        "GongWorkspace",
        "Workspaces (GET /v2/workspaces).",
        Source::Get,
        "/v2/workspaces",
        "workspaces",
        "id",
    ),
    def(
        "flows",
        "GongFlow",
        "Engage flows (sequences) of every active user: company flows and each user's personal ones \
         (GET /v2/users, then GET /v2/flows per flowOwnerEmail; one request per user).",
        Source::Get,
        "/v2/flows",
        "flows",
        "id",
    ),
    SyncDef {
        plan_gated: true,
        ..def(
            "permission-profiles",
            "GongPermissionProfile",
            "Permission profiles of every workspace (GET /v2/workspaces, then /v2/all-permission-profiles per workspace).",
            Source::Get,
            "/v2/all-permission-profiles",
            "profiles",
            "id",
        )
    },
    // Outcomes carry no id: their name (`callOutcome`) is unique per company.
    def(
        "call-outcomes",
        "GongCallOutcome",
        "Call outcome definitions of the dialer (GET /v2/call-outcomes).",
        Source::Get,
        "/v2/call-outcomes",
        "outcomes",
        "callOutcome",
    ),
];

/// What a sync needs to resume. Serialised as the opaque checkpoint.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    /// The window being fetched (incremental syncs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    /// The end of the last finished window: where the next run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// permission-profiles: the workspaces still to visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workspaces: Option<Vec<String>>,
    /// flows: the owners (emails) of the current users page still to visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owners: Option<Vec<String>>,
    /// flows: where the users list continues once `owners` is used up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    users_cursor: Option<String>,
    /// flows: the company-wide flows were listed in full once already.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    company_flows_seen: bool,
    /// flows: ids of Shared flows already emitted (each owner they are
    /// shared with lists them again). Few per company.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shared_flows: Vec<String>,
    /// The listing being followed by cursor: how far it went, to stop one
    /// that never ends (see `follow`).
    #[serde(default, skip_serializing_if = "Listing::is_fresh")]
    listing: Listing,
}

/// Pages read in one cursor chain, the empty ones in a row, the largest
/// page seen, the total Gong reported on its first page, and fingerprints
/// of the last cursors Gong handed out.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Listing {
    pages: u32,
    empty_in_a_row: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    largest_page: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cursors: Vec<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Listing {
    fn is_fresh(&self) -> bool {
        *self == Listing::default()
    }
}

/// Empty pages, each with a new cursor, after which a listing is taken to
/// be looping: Gong never answers an empty page before the last.
const MAX_EMPTY_PAGES_IN_A_ROW: u32 = 5;
/// How many of the latest cursors a listing remembers: a cursor that comes
/// back within this many pages is a loop, caught on its first repeat.
const CURSORS_REMEMBERED: usize = 16;

/// A stable fingerprint of a cursor (FNV-1a): the checkpoint keeps 8 bytes a
/// cursor rather than Gong's long cursor strings.
fn fingerprint(cursor: &str) -> u64 {
    cursor.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The next step of a cursor chain, or an error that stops a listing which
/// does not end:
/// - Gong hands out a cursor it handed out within the last
///   `CURSORS_REMEMBERED` pages (the listing would repeat forever);
/// - `MAX_EMPTY_PAGES_IN_A_ROW` empty pages in a row;
/// - twice as many pages as the `totalRecords` Gong reported need at the
///   largest page size seen (plus slack for records added meanwhile), so no
///   page size is assumed.
///
/// Each page spends one of the company's 10,000 requests a day, shared with
/// its other tools; a sync stopped here keeps what it saved, and says so.
fn follow(
    path: &str,
    previous: Listing,
    records: usize,
    total: Option<u64>,
    next: Option<&str>,
) -> Result<Listing, ProviderError> {
    let mut listing = Listing {
        pages: previous.pages + 1,
        empty_in_a_row: if records == 0 { previous.empty_in_a_row + 1 } else { 0 },
        total: previous.total.or(total),
        largest_page: previous.largest_page.max(u32::try_from(records).unwrap_or(u32::MAX)),
        cursors: previous.cursors,
    };
    let stop = |why: String, pages: u32| {
        Err(ProviderError::BadResponse(format!(
            "{path}: {why}, so the listing looks endless; stopped after {pages} pages to save the company's daily \
             request quota (what was read is kept; the next run starts this listing again)"
        )))
    };
    if let Some(next) = next {
        let print = fingerprint(next);
        if let Some(back) = listing.cursors.iter().rev().position(|seen| *seen == print) {
            let when = if back == 0 { "the page before".to_string() } else { format!("{} pages earlier", back + 1) };
            return stop(format!("Gong answered with the same cursor it gave {when}"), listing.pages);
        }
        listing.cursors.push(print);
        if listing.cursors.len() > CURSORS_REMEMBERED {
            listing.cursors.remove(0);
        }
    }
    if listing.empty_in_a_row >= MAX_EMPTY_PAGES_IN_A_ROW {
        return stop(
            format!("Gong answered {} empty pages in a row, each with a new cursor", listing.empty_in_a_row),
            listing.pages,
        );
    }
    if let Some(total) = listing.total {
        let needed = total.div_ceil(u64::from(listing.largest_page.max(1)));
        if u64::from(listing.pages) > 2 * needed + 10 {
            return stop(
                format!(
                    "Gong reported {total} records (about {needed} pages of {}) but kept sending pages",
                    listing.largest_page
                ),
                listing.pages,
            );
        }
    }
    Ok(listing)
}

pub fn run_page(request: PageRequest) -> Result<SyncPage, ProviderError> {
    let Some(sync) = SYNCS.iter().find(|s| s.name == request.sync) else {
        return Err(ProviderError::Unknown(format!(
            "no sync named `{}`; this provider offers: {}",
            request.sync,
            SYNCS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        )));
    };
    let checkpoint = read_checkpoint(request.checkpoint.as_deref())?;
    match sync.name {
        "users" => users_page(checkpoint),
        "permission-profiles" => permission_profiles_page(sync, checkpoint),
        "flows" => flows_page(sync, checkpoint),
        _ => list_page(sync, checkpoint, &request.options, request.now_unix_seconds),
    }
}

fn read_checkpoint(raw: Option<&str>) -> Result<Checkpoint, ProviderError> {
    match raw {
        None => Ok(Checkpoint::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            ProviderError::InvalidInput(format!(
                "the checkpoint was not written by this provider ({e}); restart the sync from the beginning"
            ))
        }),
    }
}

fn write_checkpoint(checkpoint: &Checkpoint) -> Result<String, ProviderError> {
    to_json(checkpoint)
}

/// The window of this run: resumed, continued from the last finished one,
/// or a first run's backfill.
fn window(
    sync: &SyncDef,
    checkpoint: &Checkpoint,
    options: &SyncOptions,
    now: i64,
) -> Result<(String, String), ProviderError> {
    if let (Some(from), Some(to)) = (&checkpoint.from, &checkpoint.to) {
        return Ok((from.clone(), to.clone()));
    }
    check_now(now)?;
    let from = match (&checkpoint.since, &options.modified_since) {
        (Some(since), _) => match time::parse_rfc3339(since) {
            Some(end) if sync.overlap_days > 0 => time::format_rfc3339(end - i64::from(sync.overlap_days) * 86_400),
            _ => since.clone(),
        },
        (None, Some(given)) => {
            if !time::is_rfc3339(given) {
                return Err(ProviderError::InvalidInput(format!(
                    "modified-since must be an RFC 3339 date-time such as 2024-05-01T00:00:00Z, got {given:?}"
                )));
            }
            given.clone()
        }
        (None, None) => {
            let days = options.backfill_days.unwrap_or(DEFAULT_BACKFILL_DAYS);
            time::format_rfc3339(now - i64::from(days) * 86_400)
        }
    };
    Ok((from, time::format_rfc3339(now)))
}

/// Another host's clock may come in the wrong unit: milliseconds (a
/// JavaScript `Date.now()`) would put the window's end in the year 55,000.
fn check_now(now: i64) -> Result<(), ProviderError> {
    const YEAR_2000: i64 = 946_684_800;
    const YEAR_10000: i64 = 253_402_300_800;
    match now {
        YEAR_2000..YEAR_10000 => Ok(()),
        YEAR_10000.. => Err(ProviderError::InvalidInput(
            "now-unix-seconds is after the year 9999; pass seconds since 1970, not milliseconds".into(),
        )),
        _ => Err(ProviderError::InvalidInput(
            "now-unix-seconds is before the year 2000; pass the host's current time in seconds since 1970".into(),
        )),
    }
}

fn list_page(
    sync: &SyncDef,
    checkpoint: Checkpoint,
    options: &SyncOptions,
    now: i64,
) -> Result<SyncPage, ProviderError> {
    let window = if sync.incremental() { Some(window(sync, &checkpoint, options, now)?) } else { None };
    let answer = match sync.source {
        Source::Get => {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some((from, to)) = &window {
                query.push(("fromDateTime", from));
                query.push(("toDateTime", to));
            }
            if let Some(cursor) = &checkpoint.cursor {
                query.push(("cursor", cursor));
            }
            api::send_with(Method::Get, sync.path, &query, None, true)?
        }
        Source::Post => {
            let mut body = sync.body.map(|b| b()).unwrap_or_else(|| json!({}));
            let mut filter = Map::new();
            if let Some((from, to)) = &window {
                match sync.window {
                    Window::ReviewDate => {
                        let (from_day, to_day) = review_days(from, to);
                        filter.insert("reviewFromDate".into(), json!(from_day));
                        filter.insert("reviewToDate".into(), json!(to_day));
                    }
                    _ => {
                        filter.insert("fromDateTime".into(), json!(from));
                        filter.insert("toDateTime".into(), json!(to));
                    }
                }
            }
            body["filter"] = Value::Object(filter);
            if let Some(cursor) = &checkpoint.cursor {
                body["cursor"] = json!(cursor);
            }
            let bytes = serde_json::to_vec(&body).map_err(|e| ProviderError::BadResponse(e.to_string()))?;
            // These POSTs only read: safe for the host to retry.
            api::send_with(Method::Post, sync.path, &[], Some(bytes), true)?
        }
    };
    let (records, next_cursor, total) = match answer.status {
        // Gong's "No calls found corresponding to the provided filters".
        404 if !sync.plan_gated => (Vec::new(), None, None),
        401 | 403 | 404 if sync.plan_gated => return Err(not_available(sync.path)),
        status if !(200..300).contains(&status) => {
            return Err(api::error_for_status(sync.path, status, &answer.body));
        }
        _ => {
            let page = LazyPage::read(sync.path, &answer.body)?;
            let (next, total) = page.cursor_and_total();
            (page.records(sync)?, next, total)
        }
    };
    let listing = if next_cursor.is_some() || checkpoint.cursor.is_some() {
        follow(sync.path, checkpoint.listing, records.len(), total, next_cursor.as_deref())?
    } else {
        Listing::default()
    };
    let next = match (next_cursor, window) {
        (Some(cursor), window) => Some(Checkpoint {
            cursor: Some(cursor),
            from: window.as_ref().map(|w| w.0.clone()),
            to: window.map(|w| w.1),
            listing,
            ..Checkpoint::default()
        }),
        // Window finished: the next run starts where it ended.
        (None, Some((_, to))) => {
            let next = Checkpoint { since: Some(to), ..Checkpoint::default() };
            return finish_counted(records, Some(next), true, total);
        }
        (None, None) => None,
    };
    let done = next.is_none();
    finish_counted(records, next, done, total)
}

/// The review dates covering every review made in [from, to), whatever
/// the company's time zone. Gong reads `reviewFromDate` (inclusive) and
/// `reviewToDate` (exclusive, its reference says) as days in the company's
/// zone, which the API does not tell us: UTC-12 to UTC+14. So the first day
/// is the day before `from` in UTC (the westernmost zone's date of `from`,
/// and a day of overlap with the last run, which the upserts make free),
/// and the end is the day after `to`'s date in the easternmost zone, so a
/// review made later today, anywhere, is inside. Reviews re-read next run
/// are upserted, not duplicated.
fn review_days(from: &str, to: &str) -> (String, String) {
    const DAY: i64 = 86_400;
    const EASTERNMOST_OFFSET: i64 = 14 * 3_600;
    let day = |unix: i64| {
        let text = time::format_rfc3339(unix);
        text.get(..10).unwrap_or(&text).to_string()
    };
    match (time::parse_rfc3339(from), time::parse_rfc3339(to)) {
        (Some(from), Some(to)) => (day(from - DAY), day(to + EASTERNMOST_OFFSET + DAY)),
        // Our own bounds are always RFC 3339; keep Gong's own check as the backstop.
        _ => (from.get(..10).unwrap_or(from).to_string(), to.get(..10).unwrap_or(to).to_string()),
    }
}

fn finish(records: Vec<SyncRecord>, next: Option<Checkpoint>, done: bool) -> Result<SyncPage, ProviderError> {
    finish_counted(records, next, done, None)
}

/// A page with the listing's total, as Gong counted it.
fn finish_counted(
    records: Vec<SyncRecord>,
    next: Option<Checkpoint>,
    done: bool,
    total_records: Option<u64>,
) -> Result<SyncPage, ProviderError> {
    let next_checkpoint = next.as_ref().map(write_checkpoint).transpose()?;
    Ok(SyncPage { records, next_checkpoint, done, total_records })
}

/// Gong's cursor sits in `records.cursor`; settings lists may put it at the top level.
fn next_cursor(page: &Value) -> Option<String> {
    page.pointer("/records/cursor")
        .or_else(|| page.get("cursor"))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// A page read without building its whole tree: the top-level fields stay
/// text until asked for, and the items are parsed one at a time. A tree of
/// small objects (a transcript's sentences) takes ten times its JSON in
/// memory, so a page near the host's 32 MiB response cap would not fit the
/// guest's memory whole; this way a page needs about twice its size.
struct LazyPage<'a> {
    path: &'static str,
    fields: alloc::collections::BTreeMap<String, &'a RawValue>,
}

impl<'a> LazyPage<'a> {
    fn read(path: &'static str, body: &'a [u8]) -> Result<LazyPage<'a>, ProviderError> {
        let fields = serde_json::from_slice(body)
            .map_err(|e| ProviderError::BadResponse(format!("Gong's answer to {path} is not a JSON object: {e}")))?;
        Ok(LazyPage { path, fields })
    }

    /// Gong's cursor sits in `records.cursor` (settings lists may put it at
    /// the top level), beside `records.totalRecords`.
    fn cursor_and_total(&self) -> (Option<String>, Option<u64>) {
        let records: Option<gong::Records> =
            self.fields.get("records").and_then(|r| serde_json::from_str(r.get()).ok());
        let top: Option<String> =
            self.fields.get("cursor").and_then(|c| serde_json::from_str::<Option<String>>(c.get()).ok()).flatten();
        let cursor =
            records.as_ref().and_then(|r| r.next_cursor().map(str::to_string)).or(top).filter(|c| !c.is_empty());
        (cursor, records.and_then(|r| r.total_records))
    }

    fn records(&self, sync: &SyncDef) -> Result<Vec<SyncRecord>, ProviderError> {
        let Some(raw) = self.fields.get(sync.items) else {
            // An answer without its list is not an empty page: saving nothing
            // and reporting success would hide that Gong answered something else.
            let keys: Vec<&str> = self.fields.keys().map(String::as_str).collect();
            return Err(ProviderError::BadResponse(format!(
                "{}: the answer has no `{}` list (it has: {}); Gong's answer shape may have changed",
                self.path,
                sync.items,
                keys.join(", ")
            )));
        };
        if raw.get().trim() == "null" {
            return Ok(Vec::new());
        }
        let items: Vec<&RawValue> = serde_json::from_str(raw.get())
            .map_err(|_| ProviderError::BadResponse(format!("{}: `{}` is not a list", self.path, sync.items)))?;
        if items.len() > gong::MAX_RECORDS_PER_PAGE {
            return Err(gong::too_many_records(self.path));
        }
        items
            .into_iter()
            .map(|item| {
                let item: Value = serde_json::from_str(item.get())
                    .map_err(|e| ProviderError::BadResponse(format!("{}: a record is not JSON: {e}", self.path)))?;
                record_of(sync, item)
            })
            .collect()
    }
}

/// The records of a page already parsed (the small per-workspace and
/// per-owner pages), by the same rules as `LazyPage::records`.
fn records_of(sync: &SyncDef, page: Value) -> Result<Vec<SyncRecord>, ProviderError> {
    if !page.is_object() {
        return Err(ProviderError::BadResponse(format!("{}: the answer is not a JSON object", sync.path)));
    }
    let text = to_json(&page)?;
    LazyPage::read(sync.path, text.as_bytes())?.records(sync)
}

fn record_of(sync: &SyncDef, mut item: Value) -> Result<SyncRecord, ProviderError> {
    let id = lookup(&item, sync.id)
        .and_then(gong::id_text)
        .ok_or_else(|| ProviderError::BadResponse(format!("{}: a record has no usable `{}`", sync.path, sync.id)))?;
    let modified_at = sync.modified.and_then(|path| lookup(&item, path)).and_then(Value::as_str).map(str::to_string);
    if let Value::Object(object) = &mut item {
        // Every record gets a top-level string `id`, whatever Gong called it.
        object.insert("id".into(), json!(id));
    }
    Ok(SyncRecord { id, modified_at, json: to_json(&item)? })
}

/// One extensive call as a `calls` record (also used for webhook payloads).
pub fn calls_record(call: Value) -> Result<SyncRecord, ProviderError> {
    let sync = SYNCS.iter().find(|s| s.name == "calls").ok_or_else(|| ProviderError::Unknown("calls".into()))?;
    record_of(sync, call)
}

fn lookup<'v>(value: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(value, |v, key| v.get(key))
}

fn users_page(checkpoint: Checkpoint) -> Result<SyncPage, ProviderError> {
    let query: Vec<(&str, &str)> = checkpoint.cursor.as_deref().map(|c| ("cursor", c)).into_iter().collect();
    let page: UsersPage = api::get_json("/v2/users", &query)?;
    let next_cursor = page.records.next_cursor().map(str::to_string);
    let total = page.records.total_records;
    let listing = follow("/v2/users", checkpoint.listing, page.users.len(), total, next_cursor.as_deref())?;
    let records = page
        .users
        .into_iter()
        .map(|u| {
            let user = User::from(u);
            Ok(SyncRecord { id: user.id.clone(), modified_at: None, json: to_json(&user)? })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    let next = next_cursor.map(|cursor| Checkpoint { cursor: Some(cursor), listing, ..Checkpoint::default() });
    let done = next.is_none();
    finish_counted(records, next, done, total)
}

/// Visits every workspace: the first page lists them, each later page is one
/// workspace's profiles (with `workspaceId` added to each record).
fn permission_profiles_page(sync: &SyncDef, checkpoint: Checkpoint) -> Result<SyncPage, ProviderError> {
    let mut remaining = match checkpoint.workspaces {
        Some(remaining) => remaining,
        None => {
            let answer: Value = api::get_json("/v2/workspaces", &[])?;
            let ids: Vec<String> = answer["workspaces"]
                .as_array()
                .map(|ws| ws.iter().filter_map(|w| w.get("id").and_then(gong::id_text)).collect())
                .unwrap_or_default();
            ids
        }
    };
    let Some(workspace) = remaining.first().cloned() else {
        return finish(Vec::new(), None, true);
    };
    let mut query = vec![("workspaceId", workspace.as_str())];
    if let Some(cursor) = &checkpoint.cursor {
        query.push(("cursor", cursor));
    }
    let answer = api::send_with(Method::Get, sync.path, &query, None, true)?;
    if matches!(answer.status, 401 | 403 | 404) {
        return Err(not_available(sync.path));
    }
    let mut page: Value = api::decode_success(sync.path, answer)?;
    let cursor = next_cursor(&page);
    if let Some(Value::Array(profiles)) = page.get_mut(sync.items) {
        for profile in profiles.iter_mut() {
            // Profiles are per workspace; the id is only unique within one.
            if let Some(id) = profile.get(sync.id).and_then(gong::id_text)
                && let Value::Object(profile) = profile
            {
                profile.insert("workspaceId".into(), json!(workspace));
                profile.insert("id".into(), json!(format!("{workspace}:{id}")));
            }
        }
    }
    let records = records_of(sync, page)?;
    // More of this workspace's profiles, or on to the next workspace.
    if cursor.is_none() {
        remaining.remove(0);
    }
    let next =
        (!remaining.is_empty()).then(|| Checkpoint { workspaces: Some(remaining), cursor, ..Checkpoint::default() });
    let done = next.is_none();
    finish(records, next, done)
}

/// Gong lists flows only per owner (`flowOwnerEmail` is required), so the
/// sync walks the users list a page at a time and asks for each active
/// user's flows. Company flows come back for every owner: they are kept from
/// the first owner whose list was read in full and dropped after that. Each
/// call makes at most two requests: the next users page when the owners run
/// out, and one page of one owner's flows.
fn flows_page(sync: &SyncDef, checkpoint: Checkpoint) -> Result<SyncPage, ProviderError> {
    let Checkpoint { owners, users_cursor, cursor, mut company_flows_seen, mut shared_flows, .. } = checkpoint;
    let (mut owners, users_cursor) = match (owners, users_cursor) {
        (Some(owners), users_cursor) if !owners.is_empty() => (owners, users_cursor),
        // Every users page read and every owner visited.
        (Some(_), None) => return finish(Vec::new(), None, true),
        // The first users page, or the next one.
        (_, users_cursor) => {
            let query: Vec<(&str, &str)> = users_cursor.as_deref().map(|c| ("cursor", c)).into_iter().collect();
            let page: UsersPage = api::get_json("/v2/users", &query)?;
            let next_users = page.records.next_cursor().map(str::to_string);
            let owners = page
                .users
                .into_iter()
                .filter(|u| u.active.unwrap_or(true))
                .filter_map(|u| u.email_address.filter(|e| !e.is_empty()))
                .collect();
            (owners, next_users)
        }
    };
    let mut records = Vec::new();
    let mut flows_cursor = None;
    let mut listed = false;
    if let Some(owner) = owners.first().cloned() {
        let mut query = vec![("flowOwnerEmail", owner.as_str())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let answer = api::send_with(Method::Get, sync.path, &query, None, true)?;
        // 404: the user left Gong between the users page and now; no flows.
        // Anything else that is not a success is an error for the whole sync.
        if answer.status != 404 {
            let mut page: Value = api::decode_success(sync.path, answer)?;
            flows_cursor = next_cursor(&page);
            listed = true;
            if let Some(Value::Array(flows)) = page.get_mut(sync.items) {
                let is =
                    |flow: &Value, visibility: &str| flow.get("visibility").and_then(Value::as_str) == Some(visibility);
                if company_flows_seen {
                    flows.retain(|flow| !is(flow, "Company"));
                }
                // A Shared flow comes once, from the first owner it is shared with.
                flows.retain(|flow| {
                    let id = flow.get("id").and_then(gong::id_text);
                    match id {
                        Some(id) if is(flow, "Shared") => {
                            let new = !shared_flows.contains(&id);
                            if new {
                                shared_flows.push(id);
                            }
                            new
                        }
                        _ => true,
                    }
                });
                for flow in flows.iter_mut() {
                    // A personal flow belongs to the owner we asked for;
                    // Gong's flow object does not say so itself.
                    if is(flow, "Personal")
                        && let Value::Object(flow) = flow
                    {
                        flow.insert("ownerEmail".into(), json!(owner));
                    }
                }
            }
            records = records_of(sync, page)?;
        }
        if flows_cursor.is_none() {
            owners.remove(0);
            company_flows_seen |= listed;
        }
    }
    if owners.is_empty() && users_cursor.is_none() {
        return finish(records, None, true);
    }
    let next = Checkpoint {
        owners: Some(owners),
        users_cursor,
        cursor: flows_cursor,
        company_flows_seen,
        shared_flows,
        ..Checkpoint::default()
    };
    finish(records, Some(next), false)
}

pub fn to_json<T: Serialize>(value: &T) -> Result<String, ProviderError> {
    serde_json::to_string(value).map_err(|e| ProviderError::BadResponse(format!("could not encode a record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_clock_is_checked_for_its_unit() {
        assert!(check_now(1_764_692_663).is_ok());
        let millis = check_now(1_764_692_663_000).unwrap_err();
        assert!(matches!(&millis, ProviderError::InvalidInput(m) if m.contains("not milliseconds")), "{millis:?}");
        assert!(matches!(check_now(0), Err(ProviderError::InvalidInput(m)) if m.contains("before the year 2000")));
    }

    #[test]
    fn review_days_cover_every_time_zone_with_an_exclusive_end() {
        // From the day before (UTC-12's date, and a day of overlap) to the
        // day after `to`'s date at UTC+14, exclusive.
        assert_eq!(
            review_days("2026-12-02T09:00:00Z", "2026-12-03T09:00:00Z"),
            ("2026-12-01".to_string(), "2026-12-04".to_string())
        );
        // Late in the UTC day it is already tomorrow at UTC+14.
        assert_eq!(review_days("2026-12-03T07:30:00Z", "2026-12-03T23:30:00Z").1, "2026-12-05");
        let (from, to) = review_days("2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z");
        assert!(from < to, "a window within one UTC day is never empty: {from}..{to}");
    }

    #[test]
    fn a_listing_that_never_ends_is_stopped() {
        let mut listing = Listing::default();
        for n in 1..MAX_EMPTY_PAGES_IN_A_ROW {
            listing = follow("/v2/users", listing, 0, None, Some(&format!("c{n}"))).unwrap();
        }
        let error = follow("/v2/users", listing.clone(), 0, None, Some("c-last")).unwrap_err();
        assert!(matches!(&error, ProviderError::BadResponse(m) if m.contains("5 empty pages in a row")), "{error:?}");
        // A page with records resets the run of empty ones.
        let listing = follow("/v2/users", listing, 3, None, Some("c-next")).unwrap();
        assert_eq!(listing.empty_in_a_row, 0);
        // 250 records need 3 pages of 100; 17 full pages are too many.
        let mut listing = Listing::default();
        for n in 0..16 {
            listing = follow("/v2/calls", listing, 100, Some(250), Some(&format!("c{n}"))).unwrap();
        }
        assert!(follow("/v2/calls", listing, 100, Some(250), Some("c16")).is_err());
    }

    #[test]
    fn the_guard_reads_the_page_size_gong_uses() {
        // 1,200 records in pages of 20 take 60 pages: none of them is too many.
        let mut listing = Listing::default();
        for n in 0..60 {
            listing = follow("/v2/users", listing, 20, Some(1_200), Some(&format!("c{n}"))).unwrap();
        }
        assert_eq!(listing.largest_page, 20);
    }

    #[test]
    fn a_repeated_cursor_is_stopped_on_its_first_repeat() {
        let listing = follow("/v2/users", Listing::default(), 2, Some(6), Some("same")).unwrap();
        let error = follow("/v2/users", listing, 2, Some(6), Some("same")).unwrap_err();
        let ProviderError::BadResponse(message) = &error else { panic!("{error:?}") };
        assert!(message.contains("same cursor it gave the page before"), "{message}");
        assert!(!message.contains("new cursor"), "{message}");
        // A cycle a, b, c, a is a repeat too.
        let mut listing = Listing::default();
        for cursor in ["a", "b", "c"] {
            listing = follow("/v2/users", listing, 1, None, Some(cursor)).unwrap();
        }
        let error = follow("/v2/users", listing, 1, None, Some("a")).unwrap_err();
        assert!(matches!(&error, ProviderError::BadResponse(m) if m.contains("3 pages earlier")), "{error:?}");
    }

    #[test]
    fn checkpoints_round_trip_and_reject_strangers() {
        let c = Checkpoint {
            cursor: Some("c".into()),
            from: Some("a".into()),
            to: Some("b".into()),
            ..Checkpoint::default()
        };
        let text = write_checkpoint(&c).unwrap();
        assert_eq!(read_checkpoint(Some(&text)).unwrap(), c);
        assert!(read_checkpoint(Some(r#"{"page":3}"#)).is_err());
    }

    #[test]
    fn the_cursor_is_found_in_records_or_at_the_top() {
        assert_eq!(next_cursor(&json!({"records":{"cursor":"a"}})), Some("a".into()));
        assert_eq!(next_cursor(&json!({"cursor":"b"})), Some("b".into()));
        assert_eq!(next_cursor(&json!({"records":{"cursor":""}})), None);
    }

    #[test]
    fn records_get_a_string_id_from_wherever_gong_put_it() {
        let sync = SYNCS.iter().find(|s| s.name == "calls").unwrap();
        let record = record_of(sync, json!({"metaData":{"id":123,"started":"2024-01-01T00:00:00Z"}})).unwrap();
        assert_eq!(record.id, "123");
        assert_eq!(record.modified_at.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert!(record.json.contains(r#""id":"123""#));
        assert!(record_of(sync, json!({"metaData":{}})).is_err());
    }

    fn sync(name: &str) -> &'static SyncDef {
        SYNCS.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn settings_lists_read_the_keys_gong_answers_with() {
        // Shapes from Gong's OpenAPI document (Trackers) and recorded answers (outcomes).
        let trackers = json!({"requestId": "r", "keywordTrackers": [{"trackerId": "61", "trackerName": "Pricing", "updated": "2024-03-01T10:00:00Z"}]});
        let records = records_of(sync("trackers"), trackers).unwrap();
        assert_eq!((records[0].id.as_str(), records[0].modified_at.as_deref()), ("61", Some("2024-03-01T10:00:00Z")));
        let outcomes = json!({"requestId": "r", "outcomes": [{"callOutcome": "Connected", "category": "ANSWERED"}, {"callOutcome": "No Answer"}]});
        let ids: Vec<String> = records_of(sync("call-outcomes"), outcomes).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["Connected", "No Answer"]);
    }

    #[test]
    fn an_answer_without_its_list_is_an_error_not_an_empty_page() {
        let error = records_of(sync("trackers"), json!({"requestId": "r", "trackers": []})).unwrap_err();
        let ProviderError::BadResponse(message) = error else { panic!("{error:?}") };
        assert!(message.contains("no `keywordTrackers` list") && message.contains("requestId, trackers"), "{message}");
        assert!(records_of(sync("trackers"), json!({"keywordTrackers": null})).unwrap().is_empty());
    }
}
