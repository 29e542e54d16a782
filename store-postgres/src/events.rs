//! `EventStore`: the outbox of events (Nango's webhooks) and their deliveries.

use super::*;

#[async_trait::async_trait]
impl EventStore for PostgresStore {
    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn claim_events(&self, owner: &str, ttl: Duration, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "WITH now AS (SELECT {NOW_MS} AS ms),
                     due AS (SELECT seq AS due_seq FROM events, now
                             WHERE status = 'pending' AND next_attempt_at_ms <= now.ms
                               AND (claimed_by IS NULL OR claim_expires_at_ms <= now.ms)
                             ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
                     UPDATE events e SET claimed_by = $1, claim_expires_at_ms = (SELECT ms FROM now) + $2,
                         attempts = attempts + 1
                     FROM due WHERE e.seq = due.due_seq
                     RETURNING {EVENT_COLUMNS}"
                ),
                &[&owner, &ms(ttl), &i64::from(limit)],
            )
            .await?;
        let mut events: Vec<(i64, EventRecord)> = rows.iter().map(|r| (r.get(15), event_from_row(r))).collect();
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        if next != DeliveryNext::Skipped {
            tx.execute(
                "INSERT INTO event_deliveries (event_id, attempt, at_ms, owner, url, status_code, error, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &delivery.event_id,
                    &i64::from(delivery.attempt),
                    &(delivery.at_ms as i64),
                    &delivery.owner,
                    &delivery.url,
                    &delivery.status_code.map(i32::from),
                    &delivery.error,
                    &(delivery.duration_ms as i64),
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.execute(
            &format!(
                "UPDATE events SET status = $3, next_attempt_at_ms = {NOW_MS} + $4, claimed_by = NULL,
                     claim_expires_at_ms = NULL,
                     delivered_at_ms = CASE WHEN $3 = 'delivered' THEN {NOW_MS} ELSE delivered_at_ms END,
                     last_error = $5
                 WHERE id = $1 AND claimed_by = $2"
            ),
            &[&delivery.event_id, &delivery.owner, &status, &retry_in, &delivery.error],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn release_events(&self, owner: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE events SET claimed_by = NULL, claim_expires_at_ms = NULL WHERE claimed_by = $1",
            &[&owner],
        )
        .await?;
        Ok(())
    }

    async fn events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .query(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT $1"), &[&i64::from(limit)])
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn deliveries(&self, event_id: Option<&str>, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT event_id, attempt, at_ms, owner, url, status_code, error, duration_ms FROM event_deliveries
                 WHERE $1::text IS NULL OR event_id = $1 ORDER BY seq DESC LIMIT $2",
                &[&event_id, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRecord {
                event_id: r.get(0),
                attempt: r.get::<_, i64>(1) as u32,
                at_ms: r.get::<_, i64>(2) as u64,
                owner: r.get(3),
                url: r.get(4),
                status_code: r.get::<_, Option<i32>>(5).map(|c| c as u16),
                error: r.get(6),
                duration_ms: r.get::<_, i64>(7) as u64,
            })
            .collect())
    }

    async fn prune_events(&self, before_ms: u64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let before = before_ms as i64;
        tx.execute(
            "DELETE FROM event_deliveries WHERE event_id IN (SELECT id FROM events WHERE created_at_ms < $1)",
            &[&before],
        )
        .await
        .map_err(|e| self.err(e))?;
        let pruned =
            tx.execute("DELETE FROM events WHERE created_at_ms < $1", &[&before]).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(pruned)
    }
}
