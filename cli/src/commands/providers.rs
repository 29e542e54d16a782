use std::process::ExitCode;

use crate::app::App;

/// One line per provider: key, name, auth mode, base URL, docs.
pub fn list(app: &App) -> anyhow::Result<ExitCode> {
    for (key, spec) in app.providers.iter() {
        println!(
            "{key:<12} {:<20} {:<7} {}  {}",
            spec.display_name,
            format!("{:?}", spec.auth_mode).to_uppercase(),
            spec.proxy.base_url,
            spec.docs.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
