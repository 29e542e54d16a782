//! `RecordStore`: synced records, in change order.

use super::*;

#[async_trait::async_trait]
impl RecordStore for PostgresStore {
    async fn upsert_records(&self, connection_id: &str, model: &str, records: &[SyncRecord]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        upsert_records(&tx, connection_id, model, records).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn records(&self, query: &RecordQuery) -> Result<RecordPage, StoreError> {
        let after: i64 = match &query.cursor {
            Some(cursor) => cursor.parse().map_err(|_| {
                StoreError::BadQuery("the cursor is not one this store handed out; start again without it".into())
            })?,
            None => 0,
        };
        let actions: Vec<&str> = query.actions.iter().map(|a| a.as_str()).collect();
        let limit = i64::from(query.limit.clamp(1, 10_000));
        let rows = self
            .query(
                "SELECT change_seq, id, json, first_seen_at, updated_at, deleted_at, changed_at_ms, last_action, pruned_at
                 FROM records
                 WHERE connection_id = $1 AND model = $2 AND change_seq > $3
                 AND ($4::bigint IS NULL OR changed_at_ms >= $4)
                 AND ($6 OR deleted_at IS NULL)
                 AND (cardinality($7::text[]) = 0 OR last_action = ANY($7))
                 AND (cardinality($8::text[]) = 0 OR id = ANY($8))
                 ORDER BY change_seq LIMIT $5",
                &[
                    &query.connection_id,
                    &query.model,
                    &after,
                    &query.modified_after_ms.map(|t| t as i64),
                    &(limit + 1),
                    &query.include_deleted,
                    &actions,
                    &query.ids,
                ],
            )
            .await?;
        let more = rows.len() as i64 > limit;
        let rows = &rows[..rows.len().min(limit as usize)];
        let next_cursor = more.then(|| rows.last().map(|r| r.get::<_, i64>(0).to_string())).flatten();
        let records = rows
            .iter()
            .map(|r| StoredRecord {
                id: r.get(1),
                json: r.get(2),
                first_seen_at: r.get::<_, i64>(3) as u64,
                updated_at: r.get::<_, i64>(4) as u64,
                deleted_at: r.get::<_, Option<i64>>(5).map(|t| t as u64),
                changed_at_ms: r.get::<_, i64>(6) as u64,
                last_action: terapi_store::LastAction::parse(r.get::<_, &str>(7))
                    .unwrap_or(terapi_store::LastAction::Added),
                pruned_at: r.get::<_, Option<i64>>(8).map(|t| t as u64),
                cursor: r.get::<_, i64>(0).to_string(),
            })
            .collect();
        Ok(RecordPage { records, next_cursor })
    }

    async fn prune_records(
        &self,
        connection_id: &str,
        model: &str,
        until_cursor: &str,
        limit: u32,
    ) -> Result<(u64, bool), StoreError> {
        let until: i64 = until_cursor.parse().map_err(|_| {
            StoreError::BadQuery("`until_cursor` is not a cursor this store handed out (a record's cursor)".into())
        })?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        lock_changes(&tx, connection_id, model).await.map_err(|e| self.err(e))?;
        let pruned = tx
            .execute(
                "UPDATE records SET json = '{}', pruned_at = $4
                 WHERE (connection_id, model, id) IN
                       (SELECT connection_id, model, id FROM records
                        WHERE connection_id = $1 AND model = $2 AND change_seq <= $3 AND pruned_at IS NULL
                        ORDER BY change_seq LIMIT $5)",
                &[&connection_id, &model, &until, &(unix_now() as i64), &i64::from(limit.clamp(1, 10_000))],
            )
            .await
            .map_err(|e| self.err(e))?;
        let more: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM records
                                WHERE connection_id = $1 AND model = $2 AND change_seq <= $3 AND pruned_at IS NULL)",
                &[&connection_id, &model, &until],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok((pruned, more))
    }
}
