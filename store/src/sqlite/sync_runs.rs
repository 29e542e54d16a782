//! `SyncRunStore`: sync runs under a lease: begin, commit page by page, finish, take over; their state and history.

use super::*;

#[async_trait::async_trait]
impl SyncRunStore for SqliteStore {
    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
            let holder: Option<(String, i64)> = tx
                .query_row(
                    "SELECT lease_owner, lease_expires_at FROM sync_state
                     WHERE connection_id = ?1 AND sync = ?2 AND lease_owner IS NOT NULL AND lease_expires_at > ?3",
                    params![lease.connection_id, lease.sync, now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            if lease.claimed {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT lease_owner FROM sync_state WHERE connection_id = ?1 AND sync = ?2",
                        params![lease.connection_id, lease.sync],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?
                    .flatten();
                if owner.as_deref() != Some(lease.owner.as_str()) {
                    return Err(StoreError::LeaseLost {
                        connection: lease.connection_id.clone(),
                        sync: lease.sync.clone(),
                    });
                }
            }
            if let Some((owner, until)) = holder
                && owner != lease.owner
            {
                return Err(StoreError::SyncRunning {
                    connection: lease.connection_id.clone(),
                    sync: lease.sync.clone(),
                    owner,
                    until: crate::time::rfc3339((until / 1000) as u64),
                });
            }
            let expires = now_ms + lease.ttl.as_millis() as i64;
            let checkpoint = tx
                .query_row(
                    "INSERT INTO sync_state (connection_id, sync, model, status, last_started_at, lease_owner, lease_expires_at,
                                             run_started_at_ms)
                     VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?8)
                     ON CONFLICT (connection_id, sync) DO UPDATE SET status = 'running', model = ?3, last_started_at = ?4,
                         last_error = NULL, lease_owner = ?5, lease_expires_at = ?6,
                         checkpoint = CASE WHEN ?7 THEN NULL ELSE sync_state.checkpoint END,
                         run_started_at_ms = CASE WHEN NOT ?7 AND sync_state.run_started_at_ms IS NOT NULL
                                                       AND sync_state.status IN ('yielded', 'running', 'interrupted')
                                                  THEN sync_state.run_started_at_ms ELSE ?8 END,
                         run_resumed = CASE WHEN NOT ?7 AND sync_state.run_started_at_ms IS NOT NULL
                                                 AND sync_state.status IN ('yielded', 'running', 'interrupted')
                                            THEN sync_state.run_resumed
                                            ELSE NOT ?7 AND sync_state.checkpoint IS NOT NULL END
                     RETURNING checkpoint",
                    params![lease.connection_id, lease.sync, model, now_ms / 1000, lease.owner, expires, full, now_ms],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO sync_runs (connection_id, sync, owner, started_at_ms, last_beat_ms, status)
                 VALUES (?1, ?2, ?3, ?4, ?4, 'running')",
                params![lease.connection_id, lease.sync, lease.owner, now_ms],
            )
            .map_err(|e| self.err(e))?;
            // A pass from the beginning starts now; a resumed one keeps its start.
            tx.execute(
                "UPDATE sync_state SET pass_started_at_ms = ?3
                 WHERE connection_id = ?1 AND sync = ?2 AND (checkpoint IS NULL OR pass_started_at_ms IS NULL)",
                params![lease.connection_id, lease.sync, now_ms],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(checkpoint)
        })
    }

    async fn commit_page(&self, lease: &SyncLease, model: &str, page: &SyncPage) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let held = tx
                .execute(
                    "UPDATE sync_state SET checkpoint = ?4, pages = pages + 1, lease_expires_at = ?5
                     WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![
                        lease.connection_id,
                        lease.sync,
                        lease.owner,
                        page.next_checkpoint,
                        now_ms + lease.ttl.as_millis() as i64
                    ],
                )
                .map_err(|e| self.err(e))?;
            if held == 0 {
                return Err(StoreError::LeaseLost {
                    connection: lease.connection_id.clone(),
                    sync: lease.sync.clone(),
                });
            }
            self.upsert_in(&tx, &lease.connection_id, model, &page.records)?;
            tx.execute(
                "UPDATE sync_runs SET pages = pages + 1, records = records + ?4, last_beat_ms = ?5
                 WHERE connection_id = ?1 AND sync = ?2 AND owner = ?3 AND finished_at_ms IS NULL",
                params![lease.connection_id, lease.sync, lease.owner, page.records.len() as i64, now_ms],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn finish_sync(
        &self,
        lease: &SyncLease,
        outcome: RunOutcome<'_>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let (status, error) = (outcome.status(), outcome.message());
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let run: Option<(String, Option<i64>, bool)> = tx
                .query_row(
                    "SELECT model, run_started_at_ms, run_resumed FROM sync_state
                     WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![lease.connection_id, lease.sync, lease.owner],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            if let (Some(event), Some((model, started, resumed))) = (event, &run) {
                let started = started.unwrap_or(now_ms);
                let changes = match outcome {
                    RunOutcome::Done | RunOutcome::Warned(_) => {
                        Some(changes_since(&tx, &lease.connection_id, model, started as u64).map_err(|e| self.err(e))?)
                    }
                    _ => None,
                };
                insert_event(&tx, event, now_ms, Some((started, *resumed)), changes).map_err(|e| self.err(e))?;
            }
            tx.execute(
                "UPDATE sync_state SET status = ?4, last_error = ?5, last_finished_at = ?6 / 1000,
                     lease_owner = NULL, lease_expires_at = NULL,
                     due_at = CASE WHEN paused AND ?4 <> 'yielded' THEN NULL
                                   WHEN ?4 = 'done' THEN ?6 + frequency_secs * 1000
                                   WHEN ?4 = 'yielded' THEN ?6
                                   WHEN due_at IS NULL AND frequency_secs IS NULL THEN NULL
                                   WHEN ?4 = 'interrupted' THEN ?6
                                   ELSE ?6 + MIN(?7, COALESCE(frequency_secs * 1000, ?7)) END
                 WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                params![
                    lease.connection_id,
                    lease.sync,
                    lease.owner,
                    status,
                    error,
                    now_ms,
                    crate::RETRY_FAILED_AFTER_MS as i64
                ],
            )
            .map_err(|e| self.err(e))?;
            tx.execute(
                // A run that lost its lease (paused past it, and taken over)
                // ended, as far as anyone could tell, at its last sign of life.
                "UPDATE sync_runs SET status = CASE WHEN ?6 THEN ?4 ELSE 'lost' END,
                     finished_at_ms = CASE WHEN ?6 THEN ?5 ELSE last_beat_ms END,
                     last_beat_ms = CASE WHEN ?6 THEN ?5 ELSE last_beat_ms END
                 WHERE connection_id = ?1 AND sync = ?2 AND owner = ?3 AND finished_at_ms IS NULL",
                params![lease.connection_id, lease.sync, lease.owner, status, now_ms, run.is_some()],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError> {
        self.blocking(|| {
            let changed = self
                .db()
                .execute(
                    "UPDATE sync_state SET lease_expires_at = 0 WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![connection_id, sync, dead_owner],
                )
                .map_err(|e| self.err(e))?;
            Ok(changed == 1)
        })
    }

    async fn mark_unseen_deleted(&self, lease: &SyncLease, model: &str) -> Result<u64, StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let gone: Vec<i64> = tx
                .prepare_cached(
                    "SELECT rowid FROM records
                     WHERE connection_id = ?1 AND model = ?4 AND deleted_at IS NULL
                       AND COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                                      WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3)",
                )
                .and_then(|mut s| {
                    s.query_map(params![lease.connection_id, lease.sync, lease.owner, model], |r| r.get(0))?.collect()
                })
                .map_err(|e| self.err(e))?;
            if gone.is_empty() {
                return Ok(0);
            }
            let first = next_changes(&tx, gone.len()).map_err(|e| self.err(e))?;
            let (now, now_ms) = (unix_now() as i64, terapi_domain::clock::unix_ms() as i64);
            {
                let mut mark = tx
                    .prepare_cached(
                        "UPDATE records SET deleted_at = ?2, updated_at = ?2, change_seq = ?3, changed_at_ms = ?4,
                             last_action = 'DELETED'
                         WHERE rowid = ?1",
                    )
                    .map_err(|e| self.err(e))?;
                for (i, rowid) in gone.iter().enumerate() {
                    mark.execute(params![rowid, now, first + i as i64, now_ms]).map_err(|e| self.err(e))?;
                }
            }
            tx.commit().map_err(|e| self.err(e))?;
            Ok(gone.len() as u64)
        })
    }

    async fn unseen_records(&self, lease: &SyncLease, model: &str) -> Result<UnseenRecords, StoreError> {
        self.blocking(|| {
            let (unseen, live): (Option<i64>, i64) = self
                .db()
                .query_row(
                    "SELECT SUM(CASE WHEN COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                          WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3) THEN 1 ELSE 0 END),
                            COUNT(*)
                     FROM records WHERE connection_id = ?1 AND model = ?4 AND deleted_at IS NULL",
                    params![lease.connection_id, lease.sync, lease.owner, model],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| self.err(e))?;
            Ok(UnseenRecords { unseen: unseen.unwrap_or(0) as u64, live: live as u64 })
        })
    }

    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            self.db()
                .prepare_cached(&crate::SQL_LIVE_LEASES.replace('$', "?"))
                .and_then(|mut s| s.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
                .map_err(|e| self.err(e))
        })
    }

    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let held = tx
                .execute(
                    "UPDATE sync_state SET lease_expires_at = ?4 WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![lease.connection_id, lease.sync, lease.owner, now_ms + lease.ttl.as_millis() as i64],
                )
                .map_err(|e| self.err(e))?;
            if held == 0 {
                return Err(StoreError::LeaseLost { connection: lease.connection_id.clone(), sync: lease.sync.clone() });
            }
            tx.execute(
                "UPDATE sync_runs SET last_beat_ms = ?4
                 WHERE connection_id = ?1 AND sync = ?2 AND owner = ?3 AND finished_at_ms IS NULL",
                params![lease.connection_id, lease.sync, lease.owner, now_ms],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare_cached(
                    "SELECT connection_id, sync, owner, started_at_ms, last_beat_ms, finished_at_ms, status, pages, records
                     FROM sync_runs WHERE connection_id = ?1 ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map([connection_id], |r| {
                    Ok(SyncRunRecord {
                        connection_id: r.get(0)?,
                        sync: r.get(1)?,
                        owner: r.get(2)?,
                        started_at_ms: r.get::<_, i64>(3)? as u64,
                        last_beat_ms: r.get::<_, i64>(4)? as u64,
                        finished_at_ms: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
                        status: r.get(6)?,
                        pages: r.get::<_, i64>(7)? as u64,
                        records: r.get::<_, i64>(8)? as u64,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let db = self.db();
            let mut statement = db
                .prepare_cached(
                    "SELECT s.sync, s.model, s.checkpoint,
                            CASE WHEN s.status = 'running' AND (s.lease_expires_at IS NULL OR s.lease_expires_at <= ?2)
                                 THEN 'interrupted' ELSE s.status END,
                            s.pages, s.last_started_at, s.last_finished_at, s.last_error,
                            (SELECT COUNT(*) FROM records r WHERE r.connection_id = s.connection_id AND r.model = s.model
                                                              AND r.deleted_at IS NULL),
                            s.frequency_secs, s.paused, s.due_at
                     FROM sync_state s WHERE s.connection_id = ?1 ORDER BY s.sync",
                )
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map(params![connection_id, now_ms], |r| {
                    Ok(SyncState {
                        connection_id: connection_id.to_string(),
                        sync: r.get(0)?,
                        model: r.get(1)?,
                        checkpoint: r.get(2)?,
                        status: r.get(3)?,
                        pages: r.get::<_, i64>(4)? as u64,
                        last_started_at: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
                        last_finished_at: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
                        last_error: r.get(7)?,
                        records: r.get::<_, i64>(8)? as u64,
                        frequency_secs: r.get::<_, Option<i64>>(9)?.map(|t| t as u64),
                        paused: r.get(10)?,
                        due_at_ms: r.get::<_, Option<i64>>(11)?.map(|t| t as u64),
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }
}
