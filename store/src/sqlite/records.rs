//! `RecordStore`: synced records, in change order.

use super::*;

#[async_trait::async_trait]
impl RecordStore for SqliteStore {
    async fn upsert_records(&self, connection_id: &str, model: &str, records: &[SyncRecord]) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            self.upsert_in(&tx, connection_id, model, records)?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn records(&self, query: &RecordQuery) -> Result<RecordPage, StoreError> {
        self.blocking(|| {
            let after: i64 = match &query.cursor {
                Some(cursor) => cursor.parse().map_err(|_| {
                    StoreError::BadQuery("the cursor is not one this store handed out; start again without it".into())
                })?,
                None => 0,
            };
            let list = |words: Vec<String>| (!words.is_empty()).then(|| serde_json::to_string(&words).unwrap_or_default());
            let actions = list(query.actions.iter().map(|a| a.as_str().to_string()).collect());
            let ids = list(query.ids.clone());
            let limit = query.limit.clamp(1, 10_000);
            let db = self.db();
            let mut statement = db
                .prepare_cached(
                    "SELECT change_seq, id, json, first_seen_at, updated_at, deleted_at, changed_at_ms, last_action, pruned_at
                     FROM records
                     WHERE connection_id = ?1 AND model = ?2 AND change_seq > ?3
                     AND (?4 IS NULL OR changed_at_ms >= ?4)
                     AND (?6 OR deleted_at IS NULL)
                     AND (?7 IS NULL OR last_action IN (SELECT value FROM json_each(?7)))
                     AND (?8 IS NULL OR id IN (SELECT value FROM json_each(?8)))
                     ORDER BY change_seq LIMIT ?5",
                )
                .map_err(|e| self.err(e))?;
            let parameters = params![
                query.connection_id,
                query.model,
                after,
                query.modified_after_ms.map(|t| t as i64),
                limit + 1,
                query.include_deleted,
                actions,
                ids
            ];
            let rows = statement
                .query_map(parameters, |r| {
                    Ok(StoredRecord {
                        id: r.get(1)?,
                        json: r.get(2)?,
                        first_seen_at: r.get::<_, i64>(3)? as u64,
                        updated_at: r.get::<_, i64>(4)? as u64,
                        deleted_at: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
                        changed_at_ms: r.get::<_, i64>(6)? as u64,
                        last_action: crate::LastAction::parse(&r.get::<_, String>(7)?).unwrap_or(crate::LastAction::Added),
                        pruned_at: r.get::<_, Option<i64>>(8)?.map(|t| t as u64),
                        cursor: r.get::<_, i64>(0)?.to_string(),
                    })
                })
                .map_err(|e| self.err(e))?;
            let mut rows: Vec<StoredRecord> = rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let next_cursor = more.then(|| rows.last().map(|r| r.cursor.clone())).flatten();
            Ok(RecordPage { records: rows, next_cursor })
        })
    }

    async fn prune_records(
        &self,
        connection_id: &str,
        model: &str,
        until_cursor: &str,
        limit: u32,
    ) -> Result<(u64, bool), StoreError> {
        self.blocking(|| {
            let until: i64 = until_cursor.parse().map_err(|_| {
                StoreError::BadQuery("`until_cursor` is not a cursor this store handed out (a record's cursor)".into())
            })?;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let pruned = tx
                .execute(
                    "UPDATE records SET json = '{}', pruned_at = ?4
                     WHERE rowid IN (SELECT rowid FROM records
                                     WHERE connection_id = ?1 AND model = ?2 AND change_seq <= ?3 AND pruned_at IS NULL
                                     ORDER BY change_seq LIMIT ?5)",
                    params![connection_id, model, until, unix_now() as i64, i64::from(limit.clamp(1, 10_000))],
                )
                .map_err(|e| self.err(e))?;
            let more: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM records
                                    WHERE connection_id = ?1 AND model = ?2 AND change_seq <= ?3 AND pruned_at IS NULL)",
                    params![connection_id, model, until],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok((pruned as u64, more))
        })
    }
}
