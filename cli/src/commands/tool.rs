//! Tool governance: decisions and defaults per connection, toolsets,
//! access profiles, and the audit of calls (the rules are the platform's).

use std::process::ExitCode;

use anyhow::{Result, bail};
use terapi_platform::{DefaultClassification, Grant, Platform, ProfileEdit, ToolDecision};

use crate::app::{App, when};
use crate::{AuditCommand, ConnectionArg, ProfileCommand, ToolCommand, ToolsetCommand};

/// The connection a command names, or the store's only one.
pub async fn resolve_connection(platform: &Platform, given: ConnectionArg) -> Result<String> {
    if let Some(connection) = given.connection {
        return Ok(connection);
    }
    let all = platform.store().connections().await?;
    match all.as_slice() {
        [only] => Ok(only.id.clone()),
        [] => bail!("there is no saved connection yet; save one with `terapi connection create`"),
        many => bail!(
            "the store has {} connections ({}); name one with --connection ID",
            many.len(),
            many.iter().map(|c| c.id.as_str()).take(10).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub async fn run(app: &App, command: ToolCommand) -> Result<ExitCode> {
    let platform = app.platform().await?;
    let (tools, connection, decision) = match command {
        ToolCommand::List { connection, json } => {
            let connection = resolve_connection(&platform, connection).await?;
            let listed = platform.tools(&connection).await?;
            if json {
                let tools: Vec<_> = listed
                    .tools
                    .iter()
                    .map(|t| {
                        serde_json::json!({"name": t.action.name, "status": t.status.as_str(),
                            "read_only": t.action.read_only, "toolsets": t.toolsets,
                            "description": t.action.description})
                    })
                    .collect();
                let shown =
                    serde_json::json!({"connection": connection, "default": listed.default.as_str(), "tools": tools});
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                eprintln!("connection {connection}: tools nobody decided on are {}", listed.default.as_str());
                for tool in listed.tools {
                    let sets = if tool.toolsets.is_empty() { "-".into() } else { tool.toolsets.join(",") };
                    println!(
                        "{:<30} {:<9} {:<10} {:<20} {}",
                        tool.action.name,
                        tool.status.as_str(),
                        if tool.action.read_only { "read-only" } else { "writes" },
                        sets,
                        tool.action.description
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        ToolCommand::Default { classification, connection } => {
            let connection = resolve_connection(&platform, connection).await?;
            let classification = DefaultClassification::parse(&classification)?;
            platform.set_tool_default(&connection, classification).await?;
            eprintln!("connection {connection}: tools nobody decided on are now {}", classification.as_str());
            return Ok(ExitCode::SUCCESS);
        }
        ToolCommand::Approve { tools, connection } => (tools, connection, ToolDecision::Approve),
        ToolCommand::Deny { tools, connection } => (tools, connection, ToolDecision::Deny),
        ToolCommand::Reset { tools, connection } => (tools, connection, ToolDecision::Reset),
    };
    let connection = resolve_connection(&platform, connection).await?;
    platform.decide_tools(&connection, &tools, decision).await?;
    let done = match decision {
        ToolDecision::Approve => "approved",
        ToolDecision::Deny => "denied",
        ToolDecision::Reset => "back to the connection's default",
    };
    for tool in &tools {
        eprintln!("{tool}: {done} on {connection}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn toolset(app: &App, command: ToolsetCommand) -> Result<ExitCode> {
    let platform = app.platform().await?;
    match command {
        ToolsetCommand::List { json } => {
            let sets = platform.toolsets().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sets)?);
            } else {
                for set in sets {
                    let tools = set.tools.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
                    println!("{:<20} {}  {}", set.name, set.description, tools);
                }
            }
        }
        ToolsetCommand::Create { name, tools, description } => {
            platform.create_toolset(&name, &description, &tools).await?;
            eprintln!("toolset {name}: created with {} tool(s)", tools.len());
        }
        ToolsetCommand::Add { name, tools } => {
            let set = platform.edit_toolset(&name, &tools, &[], None).await?;
            eprintln!("toolset {name}: {} tool(s)", set.tools.len());
        }
        ToolsetCommand::Remove { name, tools } => {
            let set = platform.edit_toolset(&name, &[], &tools, None).await?;
            eprintln!("toolset {name}: {} tool(s)", set.tools.len());
        }
        ToolsetCommand::Delete { name } => {
            platform.delete_toolset(&name).await?;
            eprintln!("toolset {name}: deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn profile(app: &App, command: ProfileCommand) -> Result<ExitCode> {
    let platform = app.platform().await?;
    let (name, edit) = match command {
        ProfileCommand::List { json } => {
            let profiles = platform.access_profiles().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&profiles)?);
            } else {
                for profile in profiles {
                    let grants: Vec<String> = profile
                        .grants
                        .iter()
                        .map(|g| format!("{}@{}", g.toolset, g.connection.as_deref().unwrap_or("*")))
                        .collect();
                    let users = profile.users.iter().map(String::as_str).collect::<Vec<_>>().join(",");
                    println!("{:<20} grants: {:<40} users: {}", profile.name, grants.join(" "), users);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        ProfileCommand::Create { name, description } => {
            platform.create_access_profile(&name, &description).await?;
            eprintln!("access profile {name}: created (grant toolsets and add users next)");
            return Ok(ExitCode::SUCCESS);
        }
        ProfileCommand::Delete { name } => {
            platform.delete_access_profile(&name).await?;
            eprintln!("access profile {name}: deleted");
            return Ok(ExitCode::SUCCESS);
        }
        ProfileCommand::Grant { name, toolset, connection } => {
            (name, ProfileEdit { grant: vec![Grant { toolset, connection }], ..ProfileEdit::default() })
        }
        ProfileCommand::Revoke { name, toolset, connection } => {
            (name, ProfileEdit { revoke: vec![Grant { toolset, connection }], ..ProfileEdit::default() })
        }
        ProfileCommand::AddUser { name, users } => (name, ProfileEdit { add_users: users, ..ProfileEdit::default() }),
        ProfileCommand::RemoveUser { name, users } => {
            (name, ProfileEdit { remove_users: users, ..ProfileEdit::default() })
        }
    };
    let profile = platform.edit_access_profile(&name, &edit).await?;
    eprintln!("access profile {name}: {} grant(s), {} user(s)", profile.grants.len(), profile.users.len());
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(app: &App, command: AuditCommand) -> Result<ExitCode> {
    let AuditCommand::List { limit, json } = command;
    let entries = app.store().await?.audit_entries(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in entries {
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
