use std::process::ExitCode;

use anyhow::{Result, bail};
use terapi_host::SyncOptions;
use terapi_platform::{StoredSyncOptions, WorkerOptions};

use crate::app::{self, App, when};
use crate::commands::connection_args::ConnectionArgs;
use crate::signals;
use crate::sinks::{NdjsonSink, Progress};

#[derive(clap::Subcommand)]
pub enum RunsCommand {
    /// The newest runs, newest first (of one connection, or of all).
    List {
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One sync of a connection: its state (status, checkpoint, last error,
    /// schedule, next due) and every run of it kept, newest first.
    Show {
        /// Sync name (see `terapi sync list`).
        sync: String,
        #[command(flatten)]
        connection: crate::commands::connection_args::ConnectionArg,
        #[arg(long)]
        json: bool,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum SyncCommand {
    /// The syncs the component offers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Mark a sync due now for `terapi worker`, for one connection or all.
    Schedule {
        /// Sync name (see `terapi sync list`).
        name: String,
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION", required_unless_present = "all")]
        connection: Option<String>,
        /// Every saved connection.
        #[arg(long, conflicts_with = "connection")]
        all: bool,
    },
    /// Per sync of a saved connection: last run, records, checkpoint, last error.
    Status {
        #[command(flatten)]
        connection: crate::commands::connection_args::ConnectionArg,
        /// One JSON array of the syncs' states.
        #[arg(long)]
        json: bool,
    },
    /// Run a sync to the end. With --connection, records are saved page by page
    /// and a rerun resumes where the last one stopped; otherwise they are
    /// written as NDJSON.
    Run {
        /// Sync name (see `terapi sync list`).
        name: String,
        /// Write records here instead of stdout (without --connection).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        /// Start from this checkpoint (without --connection: printed by an earlier run).
        #[arg(long)]
        checkpoint: Option<String>,
        /// Start from the beginning, ignoring the saved checkpoint.
        #[arg(long)]
        full: bool,
        /// Mark what a full pass did not see deleted even when the pass looks
        /// cut short (fewer records than the provider's total, or more than a
        /// quarter of the stored ones gone at once).
        #[arg(long)]
        allow_mass_deletion: bool,
        /// Only records changed after this RFC 3339 time (incremental syncs).
        #[arg(long, value_name = "TIME")]
        modified_since: Option<String>,
        /// How far back an incremental sync's first run reaches [default: 30].
        #[arg(long, value_name = "DAYS")]
        backfill_days: Option<u32>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub async fn run(app: &App, command: SyncCommand) -> Result<ExitCode> {
    match command {
        SyncCommand::List { json } => {
            let platform = app.platform().await?;
            let description = platform.describe(app.default_provider()).await?;
            if json {
                let syncs: Vec<_> = description
                    .syncs
                    .iter()
                    .map(|s| {
                        serde_json::json!({"name": s.name, "model": s.model, "incremental": s.incremental,
                            "description": s.description})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&syncs)?);
                return Ok(ExitCode::SUCCESS);
            }
            for sync in &description.syncs {
                let mode = if sync.incremental { "incremental" } else { "full" };
                println!("{:<20} {:<22} {:<11} {}", sync.name, sync.model, mode, sync.description);
            }
        }
        SyncCommand::Schedule { name, connection, all } => {
            let platform = app.platform().await?;
            let ids = match connection {
                Some(id) => vec![id],
                None if all => platform.store().connections().await?.into_iter().map(|c| c.id).collect(),
                None => bail!("give --connection ID or --all"),
            };
            for id in &ids {
                platform.schedule_sync(id, &name, None).await?;
            }
            eprintln!("{name}: due now for {} connection(s); `terapi worker` runs it", ids.len());
        }
        SyncCommand::Status { connection, json } => {
            let store = app.store().await?;
            let connection = connection.resolve(store.as_ref()).await?;
            store.connection_summary(&connection).await?;
            let states = store.sync_states(&connection).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&states)?);
                return Ok(ExitCode::SUCCESS);
            }
            if states.is_empty() {
                eprintln!("no sync has run for `{connection}` yet");
            }
            for s in states {
                println!(
                    "{:<18} {:<11} records={:<8} pages={:<6} last_run={} checkpoint={}{}",
                    s.sync,
                    s.status,
                    s.records,
                    s.pages,
                    when(s.last_finished_at.or(s.last_started_at)),
                    if s.checkpoint.is_some() { "saved" } else { "none (next run starts from the beginning)" },
                    s.last_error.map(|e| format!("\n{:<18} last error: {e}", "")).unwrap_or_default()
                );
            }
        }
        SyncCommand::Run {
            name,
            output,
            checkpoint,
            full,
            allow_mass_deletion,
            modified_since,
            backfill_days,
            connection: args,
        } => {
            if let Some(since) = &modified_since {
                terapi_store::time::parse(since).map_err(|e| anyhow::anyhow!("--modified-since: {e}"))?;
            }
            let platform = app.platform().await?;
            let sync = SyncOptions { modified_since, backfill_days };
            if let Some(id) = &args.connection {
                if output.is_some() {
                    bail!("--output is for syncs without --connection; read saved records with `terapi records list`");
                }
                let stop = signals::stop_on_signal("stopping: the page being fetched is dropped, the lease released");
                let options = StoredSyncOptions {
                    full,
                    checkpoint,
                    sync,
                    stop: Some(stop),
                    time_slice: None,
                    allow_mass_deletion,
                };
                let mut progress = Progress::new((), &name);
                let result = platform.run_sync(id, &name, &options, &mut |page: &_| progress.count(page)).await;
                progress.finish();
                let (pages, records) = (progress.pages, progress.records);
                match result {
                    Err(terapi_platform::PlatformError::Interrupted { .. }) => {
                        eprintln!(
                            "{name}: interrupted after {records} records in {pages} pages; they and the checkpoint \
                             are saved: run `terapi sync run {name} --connection {id}` to resume (it may start now)"
                        );
                        return Ok(ExitCode::from(signals::INTERRUPTED));
                    }
                    Ok(done) => {
                        let from =
                            if done.resumed { "resumed from the saved checkpoint" } else { "from the beginning" };
                        let gone = match done.deleted {
                            0 => String::new(),
                            n => format!("; {n} gone from the provider, marked deleted"),
                        };
                        eprintln!("{name}: {records} records in {pages} pages saved ({from}){gone}, done");
                        if let Some(warning) = &done.warning {
                            eprintln!("{name}: {warning}");
                        }
                    }
                    Err(error) => {
                        eprintln!(
                            "{name}: {records} records in {pages} pages saved before the error; run again to resume"
                        );
                        return Err(error.into());
                    }
                }
            } else {
                let (session, _) = app::session(&platform, &args).await?;
                let mut sink = Progress::new(NdjsonSink::open(output.as_deref())?, &name);
                let stop = signals::stop_on_signal("stopping: the page being fetched is dropped");
                let result = tokio::select! {
                    result = terapi_host::run_sync(&session, &name, checkpoint.clone(), &sync, &mut sink) => Some(result),
                    () = stop.cancelled() => None,
                };
                sink.finish();
                let Some(result) = result else {
                    sink.inner.flush()?;
                    let resume = match sink.inner.last_checkpoint.as_ref().or(checkpoint.as_ref()) {
                        Some(at) => format!("resume with --checkpoint '{at}'"),
                        None => "no page was finished; run it again from the beginning".into(),
                    };
                    eprintln!(
                        "{name}: interrupted after {} records in {} pages (all written); {resume}",
                        sink.inner.written, sink.pages
                    );
                    return Ok(ExitCode::from(signals::INTERRUPTED));
                };
                if sink.inner.broken_pipe {
                    // The reader (e.g. `| head`) has all it wants.
                    return Ok(ExitCode::SUCCESS);
                }
                sink.inner.flush()?;
                match result {
                    Ok(run) => {
                        let twice = match sink.inner.duplicates {
                            0 => String::new(),
                            n => format!(" ({n} listed again by the provider, written once)"),
                        };
                        eprintln!("{name}: {} records in {} pages{twice}, done", sink.inner.written, run.pages)
                    }
                    Err(error) => {
                        if let Some(resume) = &sink.inner.last_checkpoint {
                            eprintln!(
                                "{name}: stopped after {} records in {} pages; resume with --checkpoint '{resume}'",
                                sink.records, sink.pages
                            );
                        }
                        return Err(error.into());
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Syncs this worker runs at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Seconds a run's lease lasts without a sign of life; a worker that
    /// dies has its syncs taken over after this.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u64,
    /// Exit once nothing is due and nothing is running.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Syncs of one provider tenant (a Gong company) run at once across
    /// every worker on the store.
    #[arg(long, default_value_t = 2)]
    pub per_tenant: u32,
    #[command(flatten)]
    pub webhooks: crate::commands::webhooks::WebhookArgs,
}

pub async fn worker(app: &App, args: WorkerArgs) -> Result<ExitCode> {
    let webhooks = super::serve::webhook_config(args.webhooks)?;
    let platform =
        std::sync::Arc::new(app.platform().await?.with_lease_ttl(std::time::Duration::from_secs(args.lease_secs)));
    let options = WorkerOptions {
        concurrency: args.concurrency,
        exit_when_idle: args.exit_when_idle,
        per_tenant: args.per_tenant,
        ..WorkerOptions::default()
    };
    eprintln!(
        "worker: running due syncs, {} at a time (Ctrl-C or SIGTERM stops them, keeping their checkpoints){}",
        args.concurrency,
        if webhooks.is_some() { "; delivering webhook events" } else { "" }
    );
    let stop = signals::stop_on_signal("worker: stopping the running syncs and releasing their leases");
    let deliveries = tokio_util::sync::CancellationToken::new();
    let deliverer = webhooks.map(|config| tokio::spawn(platform.clone().deliver_events(config, deliveries.clone())));
    let report = platform.clone().run_worker(options, stop.clone().cancelled_owned()).await;
    // With --exit-when-idle, events the last runs wrote are sent before
    // exiting (for a while: they stay in the store for others otherwise).
    if deliverer.is_some() && !stop.is_cancelled() {
        let drained = async {
            while platform.store().events(64).await.is_ok_and(|events| events.iter().any(|e| e.status == "pending")) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = drained => {}
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
        }
    }
    deliveries.cancel();
    if let Some(deliverer) = deliverer {
        let _ = deliverer.await;
    }
    let report = report?;
    eprintln!(
        "worker: {} runs ({} failed, {} interrupted: due again now for any worker, {} yielded), {} pages, {} records",
        report.runs, report.failed, report.interrupted, report.yielded, report.pages, report.records
    );
    if stop.is_cancelled() {
        return Ok(ExitCode::from(signals::INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

/// `terapi runs list`: the store's run history, newest first.
pub async fn runs(app: &crate::app::App, command: RunsCommand) -> anyhow::Result<std::process::ExitCode> {
    let (connection, limit, json) = match command {
        RunsCommand::List { connection, limit, json } => (connection, limit, json),
        RunsCommand::Show { sync, connection, json } => {
            let connection = connection.resolve(app.store().await?.as_ref()).await?;
            return show_run(app, &connection, &sync, json).await;
        }
    };
    let runs = app.platform().await?.recent_runs(connection.as_deref(), limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    print_runs(&runs);
    Ok(std::process::ExitCode::SUCCESS)
}

async fn show_run(
    app: &crate::app::App,
    connection: &str,
    sync: &str,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let store = app.store().await?;
    store.connection_summary(connection).await?;
    let Some(state) = store.sync_states(connection).await?.into_iter().find(|s| s.sync == sync) else {
        anyhow::bail!(
            "sync `{sync}` of `{connection}` has never run nor been scheduled; `terapi sync status --connection {connection}` shows those that have"
        );
    };
    let mut runs: Vec<_> = store.sync_runs(connection).await?.into_iter().filter(|r| r.sync == sync).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_at_ms));
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "state": state, "runs": runs }))?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!("{connection} / {sync} ({}): {}{}", state.model, state.status, if state.paused { ", paused" } else { "" });
    println!(
        "  records {}, pages {}, checkpoint {}",
        state.records,
        state.pages,
        if state.checkpoint.is_some() { "saved" } else { "none" }
    );
    if let Some(every) = state.frequency_secs {
        println!("  runs every {every} s");
    }
    if let Some(due) = state.due_at_ms {
        println!("  next due {}", terapi_store::time::rfc3339(due / 1000));
    }
    if let Some(error) = &state.last_error {
        println!("  last error: {error}");
    }
    println!("runs ({}):", runs.len());
    print_runs(&runs);
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_runs(runs: &[terapi_store::SyncRunRecord]) {
    for run in runs {
        let duration = run
            .finished_at_ms
            .map(|end| format!("{:.1}s", end.saturating_sub(run.started_at_ms) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{} {:<20} {:<16} {:<11} {:>5} pages {:>8} records {:>8}  {}",
            terapi_store::time::rfc3339(run.started_at_ms / 1000),
            run.connection_id,
            run.sync,
            run.status,
            run.pages,
            run.records,
            duration,
            run.owner
        );
    }
}
