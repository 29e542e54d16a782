//! The PostgreSQL store as a [`SqlStore`]: the driver the shared SQL runs on.

use bytes::BytesMut;
use terapi_store::StoreError;
use terapi_store::sql::{Cell, Dialect, Param, Row, Scope, SqlStore, Tx, TxWork, Work, render};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::PostgresStore;
use terapi_store::MasterKey;

/// A [`Param`] bound as the type PostgreSQL inferred for its placeholder.
#[derive(Debug)]
struct Bound<'a>(Param<'a>);

impl ToSql for Bound<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(n) => match *ty {
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            Param::Text(t) => t.to_sql(ty, out),
            Param::Bytes(b) => b.to_sql(ty, out),
            Param::Bool(b) => b.to_sql(ty, out),
            Param::TextList(list) => list.to_sql(ty, out),
            Param::OptTextList(list) => list.to_sql(ty, out),
            Param::OptIntList(list) => list.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn bound<'a>(params: &'a [Param<'a>]) -> Vec<Bound<'a>> {
    params.iter().map(|p| Bound(*p)).collect()
}

fn refs<'a>(bound: &'a [Bound<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

fn row(row: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?.map_or(Cell::Null, |n| Cell::Int(n.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?.map_or(Cell::Null, |n| Cell::Int(n.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?.map_or(Cell::Null, Cell::Bool)
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Cell::Null, Cell::Bytes)
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map_or(Cell::Null, Cell::Real)
        } else {
            // TEXT, VARCHAR, NAME; any other type fails here, naming it.
            row.try_get::<_, Option<String>>(i)?.map_or(Cell::Null, Cell::Text)
        };
        cells.push(cell);
    }
    Ok(Row(cells))
}

struct PostgresTx<'c> {
    tx: deadpool_postgres::Transaction<'c>,
    store: &'c PostgresStore,
}

#[async_trait::async_trait]
impl Tx for PostgresTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let statement = self.tx.prepare_cached(&render(sql, Dialect::Postgres)).await.map_err(|e| self.store.err(e))?;
        let bound = bound(params);
        let rows = self.tx.query(&statement, &refs(&bound)).await.map_err(|e| self.store.err(e))?;
        rows.iter().map(row).collect::<Result<_, _>>().map_err(|e| self.store.err(e))
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let statement = self.tx.prepare_cached(&render(sql, Dialect::Postgres)).await.map_err(|e| self.store.err(e))?;
        let bound = bound(params);
        self.tx.execute(&statement, &refs(&bound)).await.map_err(|e| self.store.err(e))
    }
}

#[async_trait::async_trait]
impl SqlStore for PostgresStore {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn master_key(&self) -> &MasterKey {
        &self.key
    }

    async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&render(sql, Dialect::Postgres)).await.map_err(|e| self.err(e))?;
        let bound = bound(params);
        let rows = client.query(&statement, &refs(&bound)).await.map_err(|e| self.err(e))?;
        rows.iter().map(row).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&render(sql, Dialect::Postgres)).await.map_err(|e| self.err(e))?;
        let bound = bound(params);
        client.execute(&statement, &refs(&bound)).await.map_err(|e| self.err(e))
    }

    fn transaction<'a, T: Send + 'a>(&'a self, work: TxWork<'a, T>) -> Work<'a, T> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.err(e))?;
            let mut tx = PostgresTx { tx, store: self };
            match work(&mut tx, Scope::new()).await {
                Ok(value) => {
                    tx.tx.commit().await.map_err(|e| self.err(e))?;
                    Ok(value)
                }
                // Dropping the transaction rolls it back.
                Err(e) => Err(e),
            }
        })
    }
}
