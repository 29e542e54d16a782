//! Errors at the platform's boundary. Each says what went wrong and what to
//! do; none carries a secret (text from the provider is scrubbed first).

use terapi_host::connection::ConnectionError;
use terapi_host::{ConfigError, OAuthError};
use terapi_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Host(#[from] terapi_host::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The provider refused the credential (or the call failed) while
    /// checking it; nothing was saved or changed.
    #[error("{what} was not saved: {source}")]
    NotSaved {
        what: &'static str,
        #[source]
        source: terapi_host::Error,
    },
    #[error("no component serves provider `{provider}`; {hint}")]
    NoComponent { provider: String, hint: String },
    #[error("the component serving `{provider}` offers no sync named `{sync}`; `sync list` shows them")]
    NoSync { provider: String, sync: String },
    #[error("provider `{0}` does not use OAuth; create the connection with its credential instead")]
    NotOAuth(String),
    #[error("no OAuth app is configured for provider `{0}`; give its client id and secret")]
    NoOAuthClient(String),
    #[error("{}", tool_refused(tool, connection, refusal))]
    ToolRefused { tool: String, connection: String, refusal: crate::governance::Refusal },
    /// A governance change that cannot be made as asked (nothing changed).
    #[error("{message}")]
    Governance { problem: crate::governance::GovernanceProblem, message: String },
    #[error("no action named `{0}`; `tool list` shows them")]
    NoAction(String),
    #[error("the call to `{tool}` was stopped: {reason}")]
    ToolCancelled { tool: String, reason: &'static str },
    #[error(
        "sync `{sync}` of `{connection}` was interrupted; the pages saved so far and their checkpoint are kept and \
         the next run resumes from them (it may start at once)"
    )]
    Interrupted { connection: String, sync: String },
}

fn tool_refused(tool: &str, connection: &str, refusal: &crate::governance::Refusal) -> String {
    use crate::governance::{Refusal, ToolStatus};
    match refusal {
        Refusal::Unknown => format!("no tool named `{tool}` on connection `{connection}`; `tools/list` shows yours"),
        Refusal::NotApproved(ToolStatus::Denied) => format!(
            "tool `{tool}` is denied on connection `{connection}`; an operator can approve it with \
             `terapi tool approve --connection {connection} {tool}`"
        ),
        Refusal::NotApproved(_) => format!(
            "tool `{tool}` is pending review on connection `{connection}`; an operator can approve it with \
             `terapi tool approve --connection {connection} {tool}`"
        ),
        Refusal::NotGranted => format!(
            "tool `{tool}` is not in any toolset your access profiles bind on connection `{connection}`; ask an \
             operator to add it (`terapi profile grant`)"
        ),
    }
}
