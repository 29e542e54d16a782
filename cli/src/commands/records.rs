use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use terapi_store::RecordQuery;

use crate::app::App;

#[derive(clap::Subcommand)]
pub enum RecordsCommand {
    /// Print saved records of a model as NDJSON.
    List {
        /// Model name (see `terapi sync list`), e.g. GongUser.
        model: String,
        /// Only records changed after this time (RFC 3339, a date, or unix seconds).
        #[arg(long, value_name = "TIME")]
        modified_after: Option<String>,
        #[command(flatten)]
        connection: crate::commands::connection_args::ConnectionArg,
        /// Also records a full sync found gone upstream.
        #[arg(long)]
        include_deleted: bool,
    },
}

pub async fn run(app: &App, command: RecordsCommand) -> Result<ExitCode> {
    let RecordsCommand::List { model, modified_after, connection, include_deleted } = command;
    let modified_after = modified_after
        .map(|t| terapi_store::time::parse_ms(&t).map_err(anyhow::Error::msg))
        .transpose()
        .context("--modified-after")?;
    let store = app.store().await?;
    let connection = connection.resolve(store.as_ref()).await?;
    let summary = store.connection_summary(&connection).await?;
    // A misspelt model would list nothing and look like an empty sync.
    let mut models: Vec<String> = store.sync_states(&connection).await?.into_iter().map(|s| s.model).collect();
    if !models.contains(&model) {
        let platform = app.platform().await?;
        if let Ok(description) = platform.describe(&summary.provider).await {
            models.extend(description.syncs.iter().map(|s| s.model.clone()));
        }
        models.sort();
        models.dedup();
        if !models.contains(&model) {
            anyhow::bail!(
                "`{model}` is not a model of `{connection}` ({}); its syncs store {}",
                summary.provider,
                if models.is_empty() { "none".to_string() } else { models.join(", ") }
            );
        }
    }
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
    if count == 0 && query.modified_after_ms.is_some() {
        eprintln!("0 {} records changed after --modified-after", query.model);
    } else if count == 0 {
        eprintln!(
            "0 {} records: none saved yet (`terapi sync run SYNC --connection {}` saves them)",
            query.model, query.connection_id
        );
    } else {
        eprintln!("{count} {} records", query.model);
    }
    Ok(ExitCode::SUCCESS)
}
