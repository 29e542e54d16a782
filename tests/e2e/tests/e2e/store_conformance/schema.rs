//! The two schemas cannot drift: after every migration, SQLite and
//! PostgreSQL have the same tables with the same columns, but for the
//! few things each keeps its own way (named below, with why).

use std::collections::{BTreeMap, BTreeSet};

use terapi_e2e::terapi_store::sql::SqlStore;
use terapi_e2e::terapi_store::{MasterKey, SqliteStore};
use terapi_e2e::*;

type Columns = BTreeMap<String, BTreeSet<String>>;

async fn columns(store: &impl SqlStore, sql: &str) -> Columns {
    let mut tables = Columns::new();
    for row in store.query(sql, &[]).await.unwrap() {
        tables.entry(row.text(0).unwrap()).or_default().insert(row.text(1).unwrap());
    }
    tables
}

/// Tables one database has and the other does not, and why.
const OWN_WAY: &[(&str, &str)] = &[
    // SQLite numbers the change order from a counter row; PostgreSQL from a sequence.
    ("sqlite", "counters"),
    // SQLite keeps its schema version in `PRAGMA user_version`.
    ("postgres", "schema_version"),
];

#[test]
fn both_databases_have_the_same_tables_and_columns() {
    block_on(async {
        let dir = fresh_dir("schema-drift");
        let sqlite = SqliteStore::open_in(&dir).unwrap();
        let url = fresh_database("schema_drift").await;
        let key = MasterKey::from_env_or_file(&dir).unwrap();
        let postgres = terapi_store_postgres::PostgresStore::open(&url, key, 2).await.unwrap();
        let mut on_sqlite = columns(
            &sqlite,
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .await;
        let mut on_postgres = columns(
            &postgres,
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()",
        )
        .await;
        for (database, table) in OWN_WAY {
            let tables = if *database == "sqlite" { &mut on_sqlite } else { &mut on_postgres };
            assert!(tables.remove(*table).is_some(), "{table} is no longer {database}'s own: update OWN_WAY");
        }
        assert_eq!(
            on_sqlite.keys().collect::<Vec<_>>(),
            on_postgres.keys().collect::<Vec<_>>(),
            "the same tables on both databases"
        );
        for (table, sqlite_columns) in &on_sqlite {
            assert_eq!(sqlite_columns, &on_postgres[table], "the columns of `{table}` drifted apart");
        }
    });
}
