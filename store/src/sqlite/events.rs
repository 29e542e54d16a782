//! `EventStore`: the outbox of events (Nango's webhooks) and their deliveries.

use super::*;

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            insert_event(&tx, event, terapi_domain::clock::unix_ms() as i64, None, None).map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn claim_events(&self, owner: &str, ttl: Duration, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let db = self.db();
            let mut events: Vec<(i64, EventRecord)> = db
                .prepare_cached(&format!(
                    "UPDATE events SET claimed_by = ?1, claim_expires_at_ms = ?2 + ?3, attempts = attempts + 1
                     WHERE seq IN (SELECT seq FROM events
                                   WHERE status = 'pending' AND next_attempt_at_ms <= ?2
                                     AND (claimed_by IS NULL OR claim_expires_at_ms <= ?2)
                                   ORDER BY seq LIMIT ?4)
                     RETURNING {EVENT_COLUMNS}"
                ))
                .and_then(|mut s| {
                    s.query_map(params![owner, now_ms, ttl.as_millis() as i64, i64::from(limit)], |r| {
                        Ok((r.get(15)?, event_from_row(r)?))
                    })?
                    .collect()
                })
                .map_err(|e| self.err(e))?;
            events.sort_by_key(|(seq, _)| *seq);
            Ok(events.into_iter().map(|(_, e)| e).collect())
        })
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord, next: DeliveryNext) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let (status, retry_at) = match next {
                DeliveryNext::Delivered => ("delivered", now_ms),
                DeliveryNext::Skipped => ("skipped", now_ms),
                DeliveryNext::RetryIn(wait) => ("pending", now_ms + wait.as_millis() as i64),
                DeliveryNext::GiveUp => ("failed", now_ms),
            };
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            if next != DeliveryNext::Skipped {
                tx.execute(
                    "INSERT INTO event_deliveries (event_id, attempt, at_ms, owner, url, status_code, error, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        delivery.event_id,
                        delivery.attempt,
                        delivery.at_ms as i64,
                        delivery.owner,
                        delivery.url,
                        delivery.status_code,
                        delivery.error,
                        delivery.duration_ms as i64
                    ],
                )
                .map_err(|e| self.err(e))?;
            }
            tx.execute(
                "UPDATE events SET status = ?3, next_attempt_at_ms = ?4, claimed_by = NULL, claim_expires_at_ms = NULL,
                     delivered_at_ms = CASE WHEN ?3 = 'delivered' THEN ?5 ELSE delivered_at_ms END,
                     last_error = ?6
                 WHERE id = ?1 AND claimed_by = ?2",
                params![delivery.event_id, delivery.owner, status, retry_at, now_ms, delivery.error],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn release_events(&self, owner: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "UPDATE events SET claimed_by = NULL, claim_expires_at_ms = NULL WHERE claimed_by = ?1",
                    [owner],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        self.blocking(|| {
            self.db()
                .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?1"))
                .and_then(|mut s| s.query_map([i64::from(limit)], event_from_row)?.collect())
                .map_err(|e| self.err(e))
        })
    }

    async fn deliveries(&self, event_id: Option<&str>, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.blocking(|| {
            self.db()
                .prepare_cached(
                    "SELECT event_id, attempt, at_ms, owner, url, status_code, error, duration_ms FROM event_deliveries
                     WHERE ?1 IS NULL OR event_id = ?1 ORDER BY seq DESC LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![event_id, i64::from(limit)], |r| {
                        Ok(DeliveryRecord {
                            event_id: r.get(0)?,
                            attempt: r.get::<_, i64>(1)? as u32,
                            at_ms: r.get::<_, i64>(2)? as u64,
                            owner: r.get(3)?,
                            url: r.get(4)?,
                            status_code: r.get::<_, Option<i64>>(5)?.map(|c| c as u16),
                            error: r.get(6)?,
                            duration_ms: r.get::<_, i64>(7)? as u64,
                        })
                    })?
                    .collect()
                })
                .map_err(|e| self.err(e))
        })
    }

    async fn prune_events(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute(
                "DELETE FROM event_deliveries WHERE event_id IN (SELECT id FROM events WHERE created_at_ms < ?1)",
                [before_ms as i64],
            )
            .map_err(|e| self.err(e))?;
            let pruned = tx
                .execute("DELETE FROM events WHERE created_at_ms < ?1", [before_ms as i64])
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(pruned as u64)
        })
    }
}
