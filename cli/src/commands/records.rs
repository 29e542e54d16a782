use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use terapi_store::RecordQuery;

use crate::RecordsCommand;
use crate::app::App;

pub async fn run(app: &App, command: RecordsCommand) -> Result<ExitCode> {
    let RecordsCommand::List { model, modified_after, connection, include_deleted } = command;
    let modified_after = modified_after
        .map(|t| terapi_store::time::parse_ms(&t).map_err(anyhow::Error::msg))
        .transpose()
        .context("--modified-after")?;
    let store = app.store().await?;
    store.connection_summary(&connection).await?;
    let mut query = RecordQuery {
        connection_id: connection,
        model,
        modified_after_ms: modified_after,
        cursor: None,
        limit: 1000,
        include_deleted,
        actions: Vec::new(),
        ids: Vec::new(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut count = 0u64;
    'pages: loop {
        let page = store.records(&query).await?;
        for record in &page.records {
            if out.write_all(record.json.as_bytes()).and_then(|()| out.write_all(b"\n")).is_err() {
                break 'pages; // the reader went away (e.g. `| head`)
            }
            count += 1;
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    let _ = out.flush();
    eprintln!("{count} {} records", query.model);
    Ok(ExitCode::SUCCESS)
}
