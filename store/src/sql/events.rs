//! `EventStore`, once for both stores. Claims are the one statement that
//! differs: PostgreSQL's must skip rows another claimer holds (`FOR UPDATE
//! SKIP LOCKED`), or two workers claiming at once could both take an
//! event; SQLite has one writer at a time, so its plain statement is the
//! claim.

use std::time::Duration;

use super::{Dialect, Row, SqlStore, insert_event};
use crate::{DeliveryNext, DeliveryRecord, EventRecord, EventStore, NewEvent, RecordChanges, StoreError, sql_params};

const EVENT_COLUMNS: &str = "id, kind, connection_id, facts, created_at_ms, status, attempts, next_attempt_at_ms,
     delivered_at_ms, last_error, run_started_at_ms, run_resumed, added, updated, deleted, seq";

fn event(r: &Row) -> Result<EventRecord, StoreError> {
    let changes = match (r.opt_uint(12)?, r.opt_uint(13)?, r.opt_uint(14)?) {
        (Some(added), Some(updated), Some(deleted)) => Some(RecordChanges { added, updated, deleted }),
        _ => None,
    };
    Ok(EventRecord {
        id: r.text(0)?,
        kind: r.text(1)?,
        connection_id: r.text(2)?,
        facts: r.text(3)?,
        created_at_ms: r.uint(4)?,
        status: r.text(5)?,
        attempts: r.uint(6)? as u32,
        next_attempt_at_ms: r.uint(7)?,
        delivered_at_ms: r.opt_uint(8)?,
        last_error: r.opt_text(9)?,
        run_started_at_ms: r.opt_uint(10)?,
        run_resumed: r.boolean(11)?,
        changes,
    })
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl<S: SqlStore> EventStore for S {
    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        self.transaction(Box::new(move |tx, _| Box::pin(async move { insert_event(tx, event, None, None).await })))
            .await
    }

    async fn claim_events(&self, owner: &str, ttl: Duration, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let due = "status = 'pending' AND next_attempt_at_ms <= {now_ms}
                   AND (claimed_by IS NULL OR claim_expires_at_ms <= {now_ms})";
        let sql = match self.dialect() {
            Dialect::Postgres => format!(
                "WITH due AS (SELECT seq AS due_seq FROM events WHERE {due}
                              ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
                 UPDATE events e SET claimed_by = $1, claim_expires_at_ms = {{now_ms}} + $2, attempts = attempts + 1
                 FROM due WHERE e.seq = due.due_seq
                 RETURNING {EVENT_COLUMNS}"
            ),
            Dialect::Sqlite => format!(
                "UPDATE events SET claimed_by = $1, claim_expires_at_ms = {{now_ms}} + $2, attempts = attempts + 1
                 WHERE seq IN (SELECT seq FROM events WHERE {due} ORDER BY seq LIMIT $3)
                 RETURNING {EVENT_COLUMNS}"
            ),
        };
        let rows = self.query(&sql, sql_params![owner, ms(ttl), limit]).await?;
        let mut events = rows.iter().map(|r| Ok((r.int(15)?, event(r)?))).collect::<Result<Vec<_>, StoreError>>()?;
        events.sort_by_key(|(seq, _)| *seq);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord, next: DeliveryNext) -> Result<(), StoreError> {
        let (status, retry_in) = match next {
            DeliveryNext::Delivered => ("delivered", 0),
            DeliveryNext::Skipped => ("skipped", 0),
            DeliveryNext::RetryIn(wait) => ("pending", ms(wait)),
            DeliveryNext::GiveUp => ("failed", 0),
        };
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                if next != DeliveryNext::Skipped {
                    tx.execute(
                        "INSERT INTO event_deliveries (event_id, attempt, at_ms, owner, url, status_code, error, duration_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        sql_params![
                            &delivery.event_id,
                            delivery.attempt,
                            delivery.at_ms as i64,
                            &delivery.owner,
                            &delivery.url,
                            delivery.status_code.map(i64::from),
                            delivery.error.as_deref(),
                            delivery.duration_ms as i64,
                        ],
                    )
                    .await?;
                }
                tx.execute(
                    "UPDATE events SET status = $3, next_attempt_at_ms = {now_ms} + $4, claimed_by = NULL,
                         claim_expires_at_ms = NULL,
                         delivered_at_ms = CASE WHEN $3 = 'delivered' THEN {now_ms} ELSE delivered_at_ms END,
                         last_error = $5
                     WHERE id = $1 AND claimed_by = $2",
                    sql_params![&delivery.event_id, &delivery.owner, status, retry_in, delivery.error.as_deref()],
                )
                .await?;
                Ok(())
            })
        }))
        .await
    }

    async fn release_events(&self, owner: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE events SET claimed_by = NULL, claim_expires_at_ms = NULL WHERE claimed_by = $1",
            sql_params![owner],
        )
        .await?;
        Ok(())
    }

    async fn events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .query(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT $1"), sql_params![limit])
            .await?;
        rows.iter().map(event).collect()
    }

    async fn deliveries(&self, event_id: Option<&str>, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT event_id, attempt, at_ms, owner, url, status_code, error, duration_ms FROM event_deliveries
                 WHERE CAST($1 AS TEXT) IS NULL OR event_id = $1 ORDER BY seq DESC LIMIT $2",
                sql_params![event_id, limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    event_id: r.text(0)?,
                    attempt: r.uint(1)? as u32,
                    at_ms: r.uint(2)?,
                    owner: r.text(3)?,
                    url: r.text(4)?,
                    status_code: r.opt_uint(5)?.map(|c| c as u16),
                    error: r.opt_text(6)?,
                    duration_ms: r.uint(7)?,
                })
            })
            .collect()
    }

    async fn prune_events(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                let before = before_ms as i64;
                tx.execute(
                    "DELETE FROM event_deliveries WHERE event_id IN (SELECT id FROM events WHERE created_at_ms < $1)",
                    sql_params![before],
                )
                .await?;
                tx.execute("DELETE FROM events WHERE created_at_ms < $1", sql_params![before]).await
            })
        }))
        .await
    }
}
