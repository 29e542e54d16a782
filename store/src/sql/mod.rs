//! One SQL for both stores. A role written here (`impl<S: SqlStore> …`) is
//! the only implementation of that role: SQLite and PostgreSQL run the same
//! statement text, each through its own driver ([`SqlStore`]). Statements
//! are written with `$n` placeholders, `{now_ms}` for the database's
//! clock and `{for_update}` where PostgreSQL must lock the rows read; the SQLite driver reads `$n` as `?n` and each driver puts its own
//! clock expression for `{now_ms}` (PostgreSQL's, so every machine of a
//! fleet agrees on time). Where the dialects mean different things, the
//! code branches on [`SqlStore::dialect`] and says why.

mod api_keys;
mod async_actions;
mod connect_sessions;
mod connections;
mod coordination;
mod events;
mod governance;
pub mod records;
mod schedule;
pub mod sync_runs;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use crate::StoreError;
use crate::crypto::MasterKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One bound value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
    /// PostgreSQL arrays, for a page written in one statement; SQLite has
    /// none, and refuses them.
    TextList(&'a [&'a str]),
    OptTextList(&'a [Option<&'a str>]),
    OptIntList(&'a [Option<i64>]),
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Param::Int(value)
    }
}

impl From<u32> for Param<'_> {
    fn from(value: u32) -> Self {
        Param::Int(i64::from(value))
    }
}

impl From<bool> for Param<'_> {
    fn from(value: bool) -> Self {
        Param::Bool(value)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Self {
        Param::Text(value)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(value: &'a String) -> Self {
        Param::Text(value)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(value: &'a [u8]) -> Self {
        Param::Bytes(value)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Param::Null, Into::into)
    }
}

/// `sql_params![a, b, …]`: the values as [`Param`]s.
#[macro_export]
#[doc(hidden)]
macro_rules! sql_params {
    ($($value:expr),* $(,)?) => { &[$($crate::sql::Param::from($value)),*] };
}

/// One value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

/// One row read back, its cells in the statement's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, StoreError> {
        self.0.get(i).ok_or_else(|| decode(i, "no such column"))
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| decode(i, "NULL where a number was expected"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(n) => Ok(Some(*n)),
            Cell::Bool(b) => Ok(Some(i64::from(*b))),
            // A sum over BIGINT is NUMERIC on PostgreSQL; integral here.
            Cell::Real(x) if x.fract() == 0.0 => Ok(Some(*x as i64)),
            other => Err(decode(i, &format!("{other:?} where a number was expected"))),
        }
    }

    /// A count or time that cannot be negative.
    pub fn uint(&self, i: usize) -> Result<u64, StoreError> {
        Ok(self.int(i)?.max(0) as u64)
    }

    pub fn opt_uint(&self, i: usize) -> Result<Option<u64>, StoreError> {
        Ok(self.opt_int(i)?.map(|n| n.max(0) as u64))
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| decode(i, "NULL where text was expected"))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(t) => Ok(Some(t.clone())),
            other => Err(decode(i, &format!("{other:?} where text was expected"))),
        }
    }

    /// The text of column `i`, moved out of the row (a record's JSON is
    /// the bulk of a listing: it is not copied again).
    pub fn take_text(&mut self, i: usize) -> Result<String, StoreError> {
        match self.0.get_mut(i) {
            Some(Cell::Text(t)) => Ok(std::mem::take(t)),
            Some(other) => Err(decode(i, &format!("{other:?} where text was expected"))),
            None => Err(decode(i, "no such column")),
        }
    }

    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.cell(i)? {
            Cell::Bytes(b) => Ok(b.clone()),
            other => Err(decode(i, &format!("{other:?} where bytes were expected"))),
        }
    }

    /// SQLite keeps booleans as 0 and 1, PostgreSQL as `BOOLEAN`.
    pub fn boolean(&self, i: usize) -> Result<bool, StoreError> {
        match self.cell(i)? {
            Cell::Bool(b) => Ok(*b),
            Cell::Int(n) => Ok(*n != 0),
            Cell::Null => Ok(false),
            other => Err(decode(i, &format!("{other:?} where a boolean was expected"))),
        }
    }
}

fn decode(column: usize, what: &str) -> StoreError {
    StoreError::Unreadable(format!("column {column}: {what}"))
}

/// A statement's text for a driver: `$n` as SQLite's `?n` where needed,
/// and `{now_ms}` as the driver's clock.
pub fn render(sql: &str, dialect: Dialect) -> String {
    // One pass, one allocation: this runs for every statement.
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(at) = rest.find(['$', '{']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push(if dialect == Dialect::Sqlite { '?' } else { '$' });
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{now_ms}") {
            out.push_str(now_ms_sql(dialect));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{for_update}") {
            // A SQLite transaction holds the write lock from its start.
            out.push_str(if dialect == Dialect::Postgres { "FOR UPDATE" } else { "" });
            rest = after;
        } else {
            out.push('{');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The database's clock in unix milliseconds.
pub fn now_ms_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
        Dialect::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
    }
}

pub type Work<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

/// What a transaction runs: statements on `tx`, borrowing the caller's
/// arguments for `'a`.
pub type TxWork<'a, T> = Box<dyn for<'t> FnOnce(&'t mut dyn Tx, Scope<'t, 'a>) -> Work<'t, T> + Send + 'a>;

/// Ties a transaction's lifetime `'t` to the caller's `'a`, so the work may
/// borrow the caller's arguments.
pub struct Scope<'t, 'a>(PhantomData<&'t &'a ()>);

impl Scope<'_, '_> {
    pub fn new() -> Self {
        Scope(PhantomData)
    }
}

impl Default for Scope<'_, '_> {
    fn default() -> Self {
        Scope::new()
    }
}

/// Statements inside one transaction.
#[async_trait::async_trait]
pub trait Tx: Send {
    fn dialect(&self) -> Dialect;
    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
}

/// A database both stores' SQL runs on: single statements, transactions,
/// and the master key that seals credentials.
#[async_trait::async_trait]
pub trait SqlStore: Send + Sync {
    fn dialect(&self) -> Dialect;
    fn master_key(&self) -> &MasterKey;
    async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs `work` in one transaction: committed when it returns `Ok`,
    /// rolled back otherwise.
    fn transaction<'a, T: Send + 'a>(&'a self, work: TxWork<'a, T>) -> Work<'a, T>;
}

/// The first row, if any.
pub async fn query_opt<S: SqlStore + ?Sized>(
    store: &S,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<Row>, StoreError> {
    Ok(store.query(sql, params).await?.into_iter().next())
}

/// Writes an event in the caller's transaction: with what it tells of.
pub async fn insert_event(
    tx: &mut dyn Tx,
    event: &crate::NewEvent,
    run: Option<(i64, bool)>,
    changes: Option<crate::RecordChanges>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (id, kind, connection_id, facts, created_at_ms, next_attempt_at_ms,
                             run_started_at_ms, run_resumed, added, updated, deleted)
         VALUES ($1, $2, $3, $4, {now_ms}, {now_ms}, $5, $6, $7, $8, $9)",
        sql_params![
            &event.id,
            &event.kind,
            &event.connection_id,
            &event.facts,
            run.map(|r| r.0),
            run.is_some_and(|r| r.1),
            changes.map(|c| c.added as i64),
            changes.map(|c| c.updated as i64),
            changes.map(|c| c.deleted as i64),
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_render_for_each_driver() {
        let sql = "UPDATE t SET json = '{}', at = {now_ms} WHERE id = $1 AND n = $12 {for_update}";
        assert_eq!(
            render(sql, Dialect::Sqlite),
            "UPDATE t SET json = '{}', at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = ?1 AND n = ?12 "
        );
        assert_eq!(
            render(sql, Dialect::Postgres),
            "UPDATE t SET json = '{}', at = (extract(epoch from clock_timestamp()) * 1000)::bigint \
             WHERE id = $1 AND n = $12 FOR UPDATE"
        );
    }
}
