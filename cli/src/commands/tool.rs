//! Tool governance: decisions and defaults per connection, toolsets,
//! access profiles, and the audit of calls (the rules are the platform's).

use std::process::ExitCode;

use anyhow::Result;
use terapi_platform::{DefaultClassification, Grant, ProfileEdit, ToolDecision};

use crate::app::{App, when};
use crate::commands::connection_args::ConnectionArg;

#[derive(clap::Subcommand)]
pub enum ToolCommand {
    /// A connection's tools: status there (approved, pending, denied), the
    /// toolsets holding each, and the default for tools nobody decided on.
    List {
        #[command(flatten)]
        connection: ConnectionArg,
        #[arg(long)]
        json: bool,
    },
    /// Approve tools on one connection (other connections keep their own decisions).
    Approve {
        #[arg(required = true)]
        tools: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArg,
    },
    /// Deny tools on one connection: hidden from MCP clients, calls refused.
    Deny {
        #[arg(required = true)]
        tools: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArg,
    },
    /// Forget the decisions on these tools: back to the connection's default.
    Reset {
        #[arg(required = true)]
        tools: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArg,
    },
    /// What tools nobody decided on are on this connection:
    /// auto-approve-read-only (the default), pending-for-all or approve-all.
    Default {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(terapi_platform::DefaultClassification::NAMES))]
        classification: String,
        #[command(flatten)]
        connection: ConnectionArg,
    },
}

#[derive(clap::Subcommand)]
pub enum ToolsetCommand {
    /// Every toolset and its tools.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A new named set of tools (tools may be added later).
    Create {
        name: String,
        tools: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Add tools to a toolset.
    Add {
        name: String,
        #[arg(required = true)]
        tools: Vec<String>,
    },
    /// Take tools out of a toolset.
    Remove {
        name: String,
        #[arg(required = true)]
        tools: Vec<String>,
    },
    /// Delete a toolset no access profile binds.
    Delete { name: String },
}

#[derive(clap::Subcommand)]
pub enum ProfileCommand {
    /// Every access profile: its grants (toolset on a connection, or on all) and users.
    List {
        #[arg(long)]
        json: bool,
    },
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Bind a toolset to the profile's users, on every connection or on one.
    Grant {
        name: String,
        #[arg(long, required = true)]
        toolset: String,
        /// Only on this connection (default: on every connection).
        #[arg(long)]
        connection: Option<String>,
    },
    /// Take a grant back (name it as it was granted).
    Revoke {
        name: String,
        #[arg(long, required = true)]
        toolset: String,
        #[arg(long)]
        connection: Option<String>,
    },
    AddUser {
        name: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    RemoveUser {
        name: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    Delete {
        name: String,
    },
}

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// The newest tool calls: time, caller, connection, tool, input hash, status, duration.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(app: &App, command: ToolCommand) -> Result<ExitCode> {
    let platform = app.platform().await?;
    let (tools, connection, decision) = match command {
        ToolCommand::List { connection, json } => {
            let connection = connection.resolve(platform.store().as_ref()).await?;
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
            let connection = connection.resolve(platform.store().as_ref()).await?;
            let classification = DefaultClassification::parse(&classification)?;
            platform.set_tool_default(&connection, classification).await?;
            eprintln!("connection {connection}: tools nobody decided on are now {}", classification.as_str());
            return Ok(ExitCode::SUCCESS);
        }
        ToolCommand::Approve { tools, connection } => (tools, connection, ToolDecision::Approve),
        ToolCommand::Deny { tools, connection } => (tools, connection, ToolDecision::Deny),
        ToolCommand::Reset { tools, connection } => (tools, connection, ToolDecision::Reset),
    };
    let connection = connection.resolve(platform.store().as_ref()).await?;
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
