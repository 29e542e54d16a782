use std::process::ExitCode;

use anyhow::Result;

use crate::app::{App, when};
use crate::{AuditCommand, ToolCommand};

pub async fn run(app: &App, command: ToolCommand) -> Result<ExitCode> {
    let platform = app.platform().await?;
    match command {
        ToolCommand::List { provider } => {
            for tool in platform.tools(&provider).await? {
                println!(
                    "{:<30} {:<12} {:<9} {}",
                    tool.action.name,
                    tool.toolset,
                    tool.status.as_str(),
                    tool.action.description
                );
            }
        }
        ToolCommand::Approve { tools, provider } => {
            platform.decide_tools(&provider, &tools, true).await?;
            for tool in &tools {
                eprintln!("{tool}: approved");
            }
        }
        ToolCommand::Deny { tools, provider } => {
            platform.decide_tools(&provider, &tools, false).await?;
            for tool in &tools {
                eprintln!("{tool}: denied");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(app: &App, command: AuditCommand) -> Result<ExitCode> {
    let AuditCommand::List { limit } = command;
    for e in app.store().await?.audit_entries(limit).await? {
        println!(
            "{} {:<16} {:<14} {:<28} {:<8} {:>6}ms sha256:{}{}",
            when(Some(e.at)),
            e.caller,
            e.connection_id,
            e.tool,
            e.status,
            e.duration_ms,
            &e.input_sha256[..16.min(e.input_sha256.len())],
            e.detail.map(|d| format!("  ({d})")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
