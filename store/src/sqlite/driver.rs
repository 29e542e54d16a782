//! The SQLite store as a [`SqlStore`]: the driver the shared SQL runs on.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::SqliteStore;
use crate::StoreError;
use crate::crypto::MasterKey;
use crate::sql::{Cell, Dialect, Param, Row, Scope, SqlStore, Tx, TxWork, Work, render};

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::TextList(_) | Param::OptTextList(_) | Param::OptIntList(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure("SQLite has no arrays".into()));
            }
            Param::Null => ValueRef::Null,
            Param::Int(n) => ValueRef::Integer(n),
            Param::Bool(b) => ValueRef::Integer(i64::from(b)),
            Param::Text(t) => ValueRef::Text(t.as_bytes()),
            Param::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

fn query(db: &rusqlite::Connection, sql: &str, params: &[Param<'_>]) -> rusqlite::Result<Vec<Row>> {
    query_rendered(db, &render(sql, Dialect::Sqlite), params)
}

fn query_rendered(db: &rusqlite::Connection, sql: &str, params: &[Param<'_>]) -> rusqlite::Result<Vec<Row>> {
    rows(&mut *db.prepare_cached(sql)?, params)
}

fn rows(statement: &mut rusqlite::Statement<'_>, params: &[Param<'_>]) -> rusqlite::Result<Vec<Row>> {
    let columns = statement.column_count();
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let cells = (0..columns)
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(x) => Cell::Real(x),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
                })
            })
            .collect::<rusqlite::Result<_>>()?;
        out.push(Row(cells));
    }
    Ok(out)
}

fn execute(db: &rusqlite::Connection, sql: &str, params: &[Param<'_>]) -> rusqlite::Result<u64> {
    let mut statement = db.prepare_cached(&render(sql, Dialect::Sqlite))?;
    Ok(statement.execute(rusqlite::params_from_iter(params))? as u64)
}

/// A transaction on the store's one connection, held for its length.
struct SqliteTx<'c> {
    db: &'c mut rusqlite::Connection,
    store: &'c SqliteStore,
}

#[async_trait::async_trait]
impl Tx for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        query(self.db, sql, params).map_err(|e| self.store.err(e))
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        execute(self.db, sql, params).map_err(|e| self.store.err(e))
    }
}

/// Drives a transaction's work to its end on this thread. Every statement
/// of a SQLite transaction completes when it is called, so the work never
/// waits on anything but itself; work that does (a timer, a channel) is a
/// bug, refused rather than spun on.
fn run_to_end<T>(work: impl Future<Output = Result<T, StoreError>>, store: &SqliteStore) -> Result<T, StoreError> {
    let mut work = std::pin::pin!(work);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(value) = work.as_mut().poll(&mut context) {
            return value;
        }
        std::thread::yield_now();
    }
    Err(StoreError::Database {
        path: store.path.clone(),
        message: "a transaction waited on something other than SQLite; it was rolled back".into(),
    })
}

#[async_trait::async_trait]
impl SqlStore for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn master_key(&self) -> &MasterKey {
        &self.key
    }

    async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        // A read with the connection free runs right here: in WAL mode a
        // reader never waits for a writer, and handing the worker thread
        // over (below) costs more than most reads. Anything that may wait
        // (a write, a busy connection) leaves the executor.
        if let Ok(db) = self.db.try_lock() {
            let mut statement = db.prepare_cached(&render(sql, Dialect::Sqlite)).map_err(|e| self.err(e))?;
            if statement.readonly() {
                return rows(&mut statement, params).map_err(|e| self.err(e));
            }
        }
        self.blocking(|| query(&self.db(), sql, params).map_err(|e| self.err(e)))
    }

    async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        self.blocking(|| execute(&self.db(), sql, params).map_err(|e| self.err(e)))
    }

    fn transaction<'a, T: Send + 'a>(&'a self, work: TxWork<'a, T>) -> Work<'a, T> {
        let result = self.blocking(|| {
            let mut db = self.db();
            // IMMEDIATE: the write lock is taken at the start, so a
            // transaction that reads before it writes never fails to
            // upgrade its lock because another process wrote meanwhile.
            db.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.err(e))?;
            let outcome = {
                let mut tx = SqliteTx { db: &mut db, store: self };
                run_to_end(work(&mut tx, Scope::new()), self)
            };
            match outcome {
                Ok(value) => match db.execute_batch("COMMIT") {
                    Ok(()) => Ok(value),
                    Err(e) => {
                        let _ = db.execute_batch("ROLLBACK");
                        Err(self.err(e))
                    }
                },
                Err(e) => {
                    let _ = db.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        });
        Box::pin(std::future::ready(result))
    }
}
