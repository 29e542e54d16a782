use std::process::ExitCode;

use crate::app::App;

#[derive(clap::Subcommand)]
pub enum ProvidersCommand {
    /// One line per provider: key, auth mode, what terapi does with it, docs.
    List {
        /// One JSON array: key, auth_mode, serves, not_served, docs (and the
        /// unreadable entries, with their line and message).
        #[arg(long)]
        json: bool,
    },
}

/// One line per entry: key, auth mode, what terapi does with it (auth and
/// proxy; syncs and actions where a component serves it) or why not, and
/// docs; then the entries that could not be read, with where and why.
pub fn list(app: &App, json: bool) -> anyhow::Result<ExitCode> {
    let served = app.served_by_components();
    if json {
        let mut entries: Vec<serde_json::Value> = app
            .providers
            .iter()
            .map(|(key, spec)| {
                let serves: &[&str] = match &spec.not_served {
                    None if served.contains(key) => &["auth", "proxy", "syncs", "actions"],
                    None => &["auth", "proxy"],
                    Some(_) => &[],
                };
                serde_json::json!({
                    "key": key,
                    "display_name": spec.display_name,
                    "auth_mode": spec.auth_mode.as_str(),
                    "serves": serves,
                    "not_served": spec.not_served.as_ref().map(|r| r.to_string()),
                    "docs": spec.docs,
                })
            })
            .collect();
        entries.extend(app.providers.broken().map(|(key, entry)| {
            serde_json::json!({ "key": key, "unreadable": { "line": entry.line, "message": entry.message } })
        }));
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (mut usable, mut parsed_only) = (0, 0);
    for (key, spec) in app.providers.iter() {
        let can = match &spec.not_served {
            None if served.contains(key) => {
                usable += 1;
                "auth, proxy, syncs, actions".to_string()
            }
            None => {
                usable += 1;
                "auth, proxy".to_string()
            }
            Some(reason) => {
                parsed_only += 1;
                format!("read only: {reason}")
            }
        };
        println!("{key:<32} {:<10} {can}  {}", spec.auth_mode.as_str(), spec.docs.as_deref().unwrap_or(""));
    }
    let mut broken = 0;
    for (key, entry) in app.providers.broken() {
        broken += 1;
        let line = entry.line.map(|l| format!(" (line {l})")).unwrap_or_default();
        println!("{key:<32} {:<10} not read{line}: {}", "-", entry.message);
    }
    eprintln!(
        "{} entries from {}: {usable} served, {parsed_only} read but not served, {broken} not readable",
        usable + parsed_only + broken,
        app.providers.origin()
    );
    Ok(ExitCode::SUCCESS)
}
