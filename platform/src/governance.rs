//! Who may call which tool, as C1 describes Gong's MCP server:
//!
//! - each **connection** has a default classification (auto-approve
//!   read-only tools, pending for all, or approve all) and an operator's
//!   decisions, tool by tool, that override it. Decisions on one connection
//!   change nothing on another.
//! - a **toolset** is a named, editable set of tool names.
//! - an **access profile** binds toolsets, on every connection or on
//!   chosen ones, to **users**.
//! - a **user** is authenticated by a bearer token, kept as its SHA-256.
//!
//! A user sees and may call a tool on a connection only when it is approved
//! there *and* one of their profiles binds a toolset holding it on that
//! connection. Someone at the machine itself (`terapi mcp serve` without
//! `--user`, who holds the store's key anyway) sees every approved tool.
//!
//! Everything is kept as compare-and-swap documents in the store
//! (`Store::put_governance_doc`), so the rules are written once, here, for
//! both stores, and two operators editing at once never lose a change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use terapi_host::ActionInfo;
use tokio::sync::watch;

use crate::{Platform, PlatformError};

const CONNECTION_TOOLS: &str = "connection-tools";
const TOOLSET: &str = "toolset";
const ACCESS_PROFILE: &str = "access-profile";
const MCP_USER: &str = "mcp-user";

/// The prefix of a user's bearer token, so a leaked one is recognisable
/// (secret scanners match on it).
pub const USER_TOKEN_PREFIX: &str = "terapi_mcp_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    Approved,
    Pending,
    Denied,
}

impl ToolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolStatus::Approved => "approved",
            ToolStatus::Pending => "pending",
            ToolStatus::Denied => "denied",
        }
    }
}

/// What a tool nobody has decided on is, on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultClassification {
    /// Read-only tools are approved, anything that writes waits (the
    /// default: what a connection had before it had a setting).
    #[default]
    AutoApproveReadOnly,
    /// Every tool waits for an operator.
    PendingForAll,
    /// Every tool is approved.
    ApproveAll,
}

impl DefaultClassification {
    pub const NAMES: &[&str] = &["auto-approve-read-only", "pending-for-all", "approve-all"];

    pub fn as_str(self) -> &'static str {
        match self {
            DefaultClassification::AutoApproveReadOnly => Self::NAMES[0],
            DefaultClassification::PendingForAll => Self::NAMES[1],
            DefaultClassification::ApproveAll => Self::NAMES[2],
        }
    }

    pub fn parse(name: &str) -> Result<DefaultClassification, PlatformError> {
        match name {
            "auto-approve-read-only" => Ok(DefaultClassification::AutoApproveReadOnly),
            "pending-for-all" => Ok(DefaultClassification::PendingForAll),
            "approve-all" => Ok(DefaultClassification::ApproveAll),
            other => Err(invalid(format!(
                "`{other}` is not a default classification; use one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// An operator's word on tools of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolDecision {
    Approve,
    Deny,
    /// Back to the connection's default classification.
    Reset,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ConnectionToolPolicy {
    #[serde(default)]
    default: DefaultClassification,
    /// Tool name → approved (`true`) or denied.
    #[serde(default)]
    decisions: BTreeMap<String, bool>,
}

impl ConnectionToolPolicy {
    fn status(&self, action: &ActionInfo) -> ToolStatus {
        match self.decisions.get(&action.name) {
            Some(true) => ToolStatus::Approved,
            Some(false) => ToolStatus::Denied,
            None => match self.default {
                DefaultClassification::AutoApproveReadOnly if action.read_only => ToolStatus::Approved,
                DefaultClassification::AutoApproveReadOnly | DefaultClassification::PendingForAll => {
                    ToolStatus::Pending
                }
                DefaultClassification::ApproveAll => ToolStatus::Approved,
            },
        }
    }
}

/// A tool of one connection, with its status there and the toolsets that
/// hold it.
#[derive(Debug, Clone)]
pub struct ToolInfo {
    pub action: ActionInfo,
    pub status: ToolStatus,
    pub toolsets: Vec<String>,
}

/// A connection's tools and the classification of those nobody decided on.
#[derive(Debug, Clone)]
pub struct ConnectionTools {
    pub default: DefaultClassification,
    pub tools: Vec<ToolInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolset {
    #[serde(skip_deserializing, default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub tools: BTreeSet<String>,
}

/// One binding of an access profile: a toolset, on every connection
/// (`connection: None`) or on one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    pub toolset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessProfile {
    #[serde(skip_deserializing, default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub grants: BTreeSet<Grant>,
    #[serde(default)]
    pub users: BTreeSet<String>,
}

/// A change to an access profile; every name in it is checked first.
#[derive(Debug, Clone, Default)]
pub struct ProfileEdit {
    pub description: Option<String>,
    pub grant: Vec<Grant>,
    pub revoke: Vec<Grant>,
    pub add_users: Vec<String>,
    pub remove_users: Vec<String>,
}

/// MCP users by the SHA-256 of their token: (name, token expiry).
pub(crate) type UsersByToken = BTreeMap<String, (String, Option<u64>)>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserDoc {
    token_sha256: String,
    /// Unix seconds.
    created_at: u64,
    /// When the token stops working (Unix seconds); `None`: when rotated
    /// or the user is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_expires_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpUser {
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The access profiles that name this user.
    pub profiles: Vec<String>,
    /// When their token stops working (Unix seconds), if it does.
    pub token_expires_at: Option<u64>,
}

/// Who is calling, as the platform trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// Someone at this machine, who holds the store's key anyway (`terapi
    /// mcp serve` without `--user`): every approved tool. The name is the
    /// client's own (MCP `clientInfo`), so the audit shows it as `local:NAME`.
    Local(String),
    /// A user authenticated by their token: the approved tools their
    /// access profiles bind.
    User(String),
}

impl Caller {
    /// The caller as the audit log names it.
    pub fn audit_name(&self) -> String {
        match self {
            Caller::Local(name) => format!("local:{name}"),
            Caller::User(name) => name.clone(),
        }
    }
}

/// Why a caller may not call a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such tool on the connection's component.
    Unknown,
    /// Not approved on this connection (pending or denied).
    NotApproved(ToolStatus),
    /// Approved, but none of the user's profiles binds a toolset holding it
    /// on this connection.
    NotGranted,
}

impl Refusal {
    pub fn audit_detail(&self) -> &'static str {
        match self {
            Refusal::Unknown => "no such tool",
            Refusal::NotApproved(ToolStatus::Denied) => "denied on this connection",
            Refusal::NotApproved(_) => "pending review on this connection",
            Refusal::NotGranted => "not in the caller's toolsets",
        }
    }
}

/// The part of the governance every check reads: toolsets and profiles
/// (users are read only to authenticate).
struct Bindings {
    toolsets: BTreeMap<String, Toolset>,
    profiles: Vec<AccessProfile>,
}

impl Bindings {
    /// The tools `user` is bound to on `connection`.
    fn granted(&self, user: &str, connection: &str) -> BTreeSet<&str> {
        self.profiles
            .iter()
            .filter(|profile| profile.users.contains(user))
            .flat_map(|profile| &profile.grants)
            .filter(|grant| grant.connection.as_deref().is_none_or(|c| c == connection))
            .filter_map(|grant| self.toolsets.get(&grant.toolset))
            .flat_map(|set| set.tools.iter().map(String::as_str))
            .collect()
    }

    fn toolsets_of(&self, tool: &str) -> Vec<String> {
        self.toolsets.values().filter(|set| set.tools.contains(tool)).map(|set| set.name.clone()).collect()
    }
}

/// Names of toolsets, profiles and users: what a shell, a URL and a log
/// line carry without quoting.
fn check_name(what: &str, name: &str) -> Result<(), PlatformError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.']);
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{name}` is not a valid {what} name: use 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `-` or `.`"
        )))
    }
}

use terapi_domain::digest::{hex, sha256_hex};

fn new_token() -> Result<String, PlatformError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| invalid(format!("no randomness for a new token: {e}")))?;
    Ok(format!("{USER_TOKEN_PREFIX}{}", hex(&bytes)))
}

fn corrupt(kind: &str, key: &str, error: serde_json::Error) -> PlatformError {
    invalid(format!(
        "the stored {kind} `{key}` is not readable ({error}); it was not changed. Restore the store from a backup \
         or delete that {kind} and create it again"
    ))
}

impl Platform {
    /// Reads one document; `None` when absent or deleted.
    async fn governance_read<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<(i64, Option<T>), PlatformError> {
        match self.store.governance_doc(kind, key).await? {
            None => Ok((0, None)),
            Some(doc) => {
                let body: Option<T> = serde_json::from_str(&doc.body).map_err(|e| corrupt(kind, key, e))?;
                Ok((doc.version, body))
            }
        }
    }

    /// Every live document of `kind`, by key.
    async fn governance_all<T: DeserializeOwned>(&self, kind: &str) -> Result<BTreeMap<String, T>, PlatformError> {
        let mut all = BTreeMap::new();
        for doc in self.store.governance_docs(kind).await? {
            let body: Option<T> = serde_json::from_str(&doc.body).map_err(|e| corrupt(kind, &doc.key, e))?;
            if let Some(body) = body {
                all.insert(doc.key, body);
            }
        }
        Ok(all)
    }

    /// Read, change, compare-and-swap, again if another writer came first.
    /// `change` gets the document (`None`: absent) and returns what to
    /// write (`None`: delete) and a result to hand back.
    async fn governance_update<T, R>(
        &self,
        kind: &str,
        key: &str,
        mut change: impl FnMut(Option<T>) -> Result<(Option<T>, R), PlatformError>,
    ) -> Result<R, PlatformError>
    where
        T: Serialize + DeserializeOwned,
    {
        loop {
            let (version, current) = self.governance_read::<T>(kind, key).await?;
            let (next, result) = change(current)?;
            let body = serde_json::to_string(&next)
                .map_err(|e| invalid(format!("the {kind} `{key}` could not be written: {e}")))?;
            if self.store.put_governance_doc(kind, key, version, &body).await? {
                self.tools_decided.send_modify(|generation| *generation += 1);
                return Ok(result);
            }
        }
    }

    /// A connection's policy. One never set starts from the decisions made
    /// per provider before decisions were per connection, so none is lost.
    async fn connection_tool_policy(&self, connection_id: &str) -> Result<ConnectionToolPolicy, PlatformError> {
        match self.governance_read::<ConnectionToolPolicy>(CONNECTION_TOOLS, connection_id).await? {
            (_, Some(policy)) => Ok(policy),
            (_, None) => self.legacy_policy(connection_id).await,
        }
    }

    async fn legacy_policy(&self, connection_id: &str) -> Result<ConnectionToolPolicy, PlatformError> {
        let provider = self.store.connection_summary(connection_id).await?.provider;
        Ok(ConnectionToolPolicy {
            default: DefaultClassification::default(),
            decisions: self.store.tool_decisions(&provider).await?,
        })
    }

    async fn bindings(&self) -> Result<Bindings, PlatformError> {
        let mut toolsets = self.governance_all::<Toolset>(TOOLSET).await?;
        for (name, set) in &mut toolsets {
            set.name = name.clone();
        }
        let profiles = self
            .governance_all::<AccessProfile>(ACCESS_PROFILE)
            .await?
            .into_iter()
            .map(|(name, profile)| AccessProfile { name, ..profile })
            .collect();
        Ok(Bindings { toolsets, profiles })
    }

    async fn connection_actions(
        &self,
        connection_id: &str,
    ) -> Result<Arc<terapi_host::ProviderDescription>, PlatformError> {
        let provider = self.store.connection_summary(connection_id).await?.provider;
        self.describe(&provider).await
    }

    /// Every tool of `connection_id`'s component with its status there.
    /// Reads no credential and calls no provider: it works on a connection
    /// whose credential is wrong.
    pub async fn tools(&self, connection_id: &str) -> Result<ConnectionTools, PlatformError> {
        let bindings = self.bindings().await?;
        self.tools_with(connection_id, &bindings).await
    }

    async fn tools_with(&self, connection_id: &str, bindings: &Bindings) -> Result<ConnectionTools, PlatformError> {
        let description = self.connection_actions(connection_id).await?;
        let policy = self.connection_tool_policy(connection_id).await?;
        Ok(ConnectionTools {
            default: policy.default,
            tools: description
                .actions
                .iter()
                .map(|action| ToolInfo {
                    status: policy.status(action),
                    toolsets: bindings.toolsets_of(&action.name),
                    action: action.clone(),
                })
                .collect(),
        })
    }

    /// The tools `caller` sees (and may call) on `connection_id`: one read
    /// of the toolsets and profiles serves both the listing and the filter.
    pub async fn visible_tools(&self, connection_id: &str, caller: &Caller) -> Result<Vec<ToolInfo>, PlatformError> {
        let bindings = self.bindings().await?;
        let all = self
            .tools_with(connection_id, &bindings)
            .await?
            .tools
            .into_iter()
            .filter(|t| t.status == ToolStatus::Approved);
        match caller {
            Caller::Local(_) => Ok(all.collect()),
            Caller::User(user) => {
                let granted = bindings.granted(user, connection_id);
                Ok(all.filter(|t| granted.contains(t.action.name.as_str())).collect())
            }
        }
    }

    /// Whether `caller` may call `tool` on `connection_id`, and why not.
    pub async fn check_tool_call(
        &self,
        connection_id: &str,
        caller: &Caller,
        tool: &str,
    ) -> Result<Result<(), Refusal>, PlatformError> {
        let description = self.connection_actions(connection_id).await?;
        let Some(action) = description.actions.iter().find(|a| a.name == tool) else {
            return Ok(Err(Refusal::Unknown));
        };
        let status = self.connection_tool_policy(connection_id).await?.status(action);
        if status != ToolStatus::Approved {
            return Ok(Err(Refusal::NotApproved(status)));
        }
        if let Caller::User(user) = caller
            && !self.bindings().await?.granted(user, connection_id).contains(tool)
        {
            return Ok(Err(Refusal::NotGranted));
        }
        Ok(Ok(()))
    }

    /// The connections where `caller` may see at least one toolset (every
    /// connection for a local caller).
    pub async fn reachable_connections(&self, caller: &Caller) -> Result<Vec<String>, PlatformError> {
        let all: Vec<String> = self.store.connections().await?.into_iter().map(|c| c.id).collect();
        let Caller::User(user) = caller else { return Ok(all) };
        let bindings = self.bindings().await?;
        Ok(all.into_iter().filter(|c| !bindings.granted(user, c).is_empty()).collect())
    }

    /// The names `caller` sees on `connection_id`, kept current: the
    /// receiver changes when any governance changes what they see, in this
    /// process (at once) or another on the same store (within `every`; one
    /// small query per poll). The watch stops when every receiver is gone.
    pub async fn watch_visible_tools(
        self: &Arc<Self>,
        connection_id: &str,
        caller: &Caller,
        every: Duration,
    ) -> Result<watch::Receiver<BTreeSet<String>>, PlatformError> {
        // Subscribed before the first read, so no change falls between.
        let mut decided = self.tools_decided.subscribe();
        let mut version = self.store.governance_version().await?;
        let names = |tools: Vec<ToolInfo>| tools.into_iter().map(|t| t.action.name).collect::<BTreeSet<_>>();
        let (sender, receiver) = watch::channel(names(self.visible_tools(connection_id, caller).await?));
        let platform = Arc::clone(self);
        let (connection_id, caller) = (connection_id.to_string(), caller.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = decided.changed() => {}
                    _ = sender.closed() => return,
                }
                match platform.store.governance_version().await {
                    Ok(now) if now == version => continue,
                    Ok(now) => version = now,
                    Err(e) => {
                        tracing::warn!("reading the tool policy of `{connection_id}` failed (will retry): {e}");
                        continue;
                    }
                }
                match platform.visible_tools(&connection_id, &caller).await {
                    Ok(tools) => {
                        let now = names(tools);
                        sender.send_if_modified(|known| (*known != now).then(|| *known = now).is_some());
                    }
                    Err(e) => tracing::warn!("reading the tool policy of `{connection_id}` failed (will retry): {e}"),
                }
            }
        });
        Ok(receiver)
    }

    /// Approves, denies or resets tools of one connection; every name is
    /// checked before any is changed.
    pub async fn decide_tools(
        &self,
        connection_id: &str,
        tools: &[String],
        decision: ToolDecision,
    ) -> Result<(), PlatformError> {
        let description = self.connection_actions(connection_id).await?;
        if let Some(unknown) = tools.iter().find(|t| !description.actions.iter().any(|a| &a.name == *t)) {
            return Err(PlatformError::NoAction(unknown.clone()));
        }
        let legacy = self.legacy_policy(connection_id).await?;
        self.governance_update::<ConnectionToolPolicy, ()>(CONNECTION_TOOLS, connection_id, |policy| {
            let mut policy = policy.unwrap_or_else(|| legacy.clone());
            for tool in tools {
                match decision {
                    ToolDecision::Approve => policy.decisions.insert(tool.clone(), true),
                    ToolDecision::Deny => policy.decisions.insert(tool.clone(), false),
                    ToolDecision::Reset => policy.decisions.remove(tool),
                };
            }
            Ok((Some(policy), ()))
        })
        .await
    }

    /// Sets what tools nobody decided on are, on one connection.
    pub async fn set_tool_default(
        &self,
        connection_id: &str,
        default: DefaultClassification,
    ) -> Result<(), PlatformError> {
        let legacy = self.legacy_policy(connection_id).await?;
        self.governance_update::<ConnectionToolPolicy, ()>(CONNECTION_TOOLS, connection_id, |policy| {
            Ok((Some(ConnectionToolPolicy { default, ..policy.unwrap_or_else(|| legacy.clone()) }), ()))
        })
        .await
    }

    /// Every tool name some loaded component offers.
    async fn known_tools(&self) -> Result<BTreeSet<String>, PlatformError> {
        let mut known = BTreeSet::new();
        for provider in self.components.providers() {
            known.extend(self.describe(provider).await?.actions.iter().map(|a| a.name.clone()));
        }
        Ok(known)
    }

    async fn check_tools(&self, tools: &[String]) -> Result<(), PlatformError> {
        let known = self.known_tools().await?;
        match tools.iter().find(|t| !known.contains(*t)) {
            Some(unknown) => Err(invalid(format!(
                "no loaded component offers a tool named `{unknown}`; `terapi tool list --connection ID` shows them"
            ))),
            None => Ok(()),
        }
    }

    pub async fn toolsets(&self) -> Result<Vec<Toolset>, PlatformError> {
        Ok(self.bindings().await?.toolsets.into_values().collect())
    }

    /// Creates a toolset; refused if one of that name exists.
    pub async fn create_toolset(&self, name: &str, description: &str, tools: &[String]) -> Result<(), PlatformError> {
        check_name("toolset", name)?;
        self.check_tools(tools).await?;
        self.governance_update::<Toolset, ()>(TOOLSET, name, |existing| match existing {
            Some(_) => Err(conflict(format!(
                "a toolset named `{name}` exists; edit it with `terapi toolset add|remove {name} TOOL…`"
            ))),
            None => Ok((
                Some(Toolset {
                    name: name.into(),
                    description: description.into(),
                    tools: tools.iter().cloned().collect(),
                }),
                (),
            )),
        })
        .await
    }

    /// Adds and removes tools (and changes the description, if given).
    pub async fn edit_toolset(
        &self,
        name: &str,
        add: &[String],
        remove: &[String],
        description: Option<&str>,
    ) -> Result<Toolset, PlatformError> {
        self.check_tools(add).await?;
        self.governance_update::<Toolset, Toolset>(TOOLSET, name, |existing| {
            let mut set = existing.ok_or_else(|| no_such("toolset", name))?;
            set.name = name.into();
            set.tools.extend(add.iter().cloned());
            for tool in remove {
                set.tools.remove(tool);
            }
            if let Some(description) = description {
                set.description = description.into();
            }
            Ok((Some(set.clone()), set))
        })
        .await
    }

    /// Deletes a toolset no access profile binds (so no user silently
    /// loses tools); unbind it first.
    pub async fn delete_toolset(&self, name: &str) -> Result<(), PlatformError> {
        let binding: Vec<String> = self
            .bindings()
            .await?
            .profiles
            .into_iter()
            .filter(|p| p.grants.iter().any(|g| g.toolset == name))
            .map(|p| p.name)
            .collect();
        if !binding.is_empty() {
            return Err(conflict(format!(
                "toolset `{name}` is bound by the access profile(s) {}; revoke it there first \
                 (`terapi profile revoke PROFILE --toolset {name}`)",
                binding.join(", ")
            )));
        }
        self.governance_update::<Toolset, ()>(TOOLSET, name, |existing| match existing {
            Some(_) => Ok((None, ())),
            None => Err(no_such("toolset", name)),
        })
        .await
    }

    pub async fn access_profiles(&self) -> Result<Vec<AccessProfile>, PlatformError> {
        Ok(self.bindings().await?.profiles)
    }

    pub async fn create_access_profile(&self, name: &str, description: &str) -> Result<(), PlatformError> {
        check_name("access profile", name)?;
        self.governance_update::<AccessProfile, ()>(ACCESS_PROFILE, name, |existing| match existing {
            Some(_) => Err(conflict(format!("an access profile named `{name}` exists"))),
            None => Ok((
                Some(AccessProfile {
                    name: name.into(),
                    description: description.into(),
                    grants: BTreeSet::new(),
                    users: BTreeSet::new(),
                }),
                (),
            )),
        })
        .await
    }

    /// Changes a profile; the toolsets, connections and users it names must
    /// exist.
    pub async fn edit_access_profile(&self, name: &str, edit: &ProfileEdit) -> Result<AccessProfile, PlatformError> {
        let toolsets = self.governance_all::<Toolset>(TOOLSET).await?;
        let users = self.governance_all::<UserDoc>(MCP_USER).await?;
        for grant in &edit.grant {
            if !toolsets.contains_key(&grant.toolset) {
                return Err(no_such("toolset", &grant.toolset));
            }
            if let Some(connection) = &grant.connection {
                self.store.connection_summary(connection).await?;
            }
        }
        if let Some(user) = edit.add_users.iter().find(|u| !users.contains_key(*u)) {
            return Err(no_such("user", user));
        }
        self.governance_update::<AccessProfile, AccessProfile>(ACCESS_PROFILE, name, |existing| {
            let mut profile = existing.ok_or_else(|| no_such("access profile", name))?;
            profile.name = name.into();
            profile.grants.extend(edit.grant.iter().cloned());
            for grant in &edit.revoke {
                profile.grants.remove(grant);
            }
            profile.users.extend(edit.add_users.iter().cloned());
            for user in &edit.remove_users {
                profile.users.remove(user);
            }
            if let Some(description) = &edit.description {
                profile.description = description.clone();
            }
            Ok((Some(profile.clone()), profile))
        })
        .await
    }

    pub async fn delete_access_profile(&self, name: &str) -> Result<(), PlatformError> {
        self.governance_update::<AccessProfile, ()>(ACCESS_PROFILE, name, |existing| match existing {
            Some(_) => Ok((None, ())),
            None => Err(no_such("access profile", name)),
        })
        .await
    }

    /// Creates a user and returns their bearer token: shown once, only its
    /// SHA-256 is kept. With `valid_for`, the token stops working then.
    pub async fn create_mcp_user(&self, name: &str, valid_for: Option<Duration>) -> Result<String, PlatformError> {
        check_name("user", name)?;
        let token = new_token()?;
        let now = terapi_store::unix_now();
        let doc = UserDoc {
            token_sha256: sha256_hex(&token),
            created_at: now,
            token_expires_at: valid_for.map(|d| now.saturating_add(d.as_secs())),
        };
        self.governance_update::<UserDoc, ()>(MCP_USER, name, |existing| match existing {
            Some(_) => Err(conflict(format!(
                "a user named `{name}` exists; `terapi mcp user token {name}` gives them a new token"
            ))),
            None => Ok((Some(doc.clone()), ())),
        })
        .await?;
        Ok(token)
    }

    /// A new token for a user (valid for `valid_for`, or until rotated);
    /// the old one stops working at once.
    pub async fn rotate_mcp_user_token(
        &self,
        name: &str,
        valid_for: Option<Duration>,
    ) -> Result<String, PlatformError> {
        let token = new_token()?;
        let sha = sha256_hex(&token);
        let expires = valid_for.map(|d| terapi_store::unix_now().saturating_add(d.as_secs()));
        self.governance_update::<UserDoc, ()>(MCP_USER, name, |existing| {
            let user = existing.ok_or_else(|| no_such("user", name))?;
            Ok((Some(UserDoc { token_sha256: sha.clone(), token_expires_at: expires, ..user }), ()))
        })
        .await?;
        Ok(token)
    }

    /// Deletes a user: their token stops working and no profile names
    /// them any more (a later user of the same name starts with nothing).
    pub async fn delete_mcp_user(&self, name: &str) -> Result<(), PlatformError> {
        self.governance_update::<UserDoc, ()>(MCP_USER, name, |existing| match existing {
            Some(_) => Ok((None, ())),
            None => Err(no_such("user", name)),
        })
        .await?;
        for profile in self.access_profiles().await?.into_iter().filter(|p| p.users.contains(name)) {
            let edit = ProfileEdit { remove_users: vec![name.into()], ..ProfileEdit::default() };
            self.edit_access_profile(&profile.name, &edit).await?;
        }
        Ok(())
    }

    pub async fn mcp_users(&self) -> Result<Vec<McpUser>, PlatformError> {
        let profiles = self.access_profiles().await?;
        Ok(self
            .governance_all::<UserDoc>(MCP_USER)
            .await?
            .into_iter()
            .map(|(name, doc)| McpUser {
                profiles: profiles.iter().filter(|p| p.users.contains(&name)).map(|p| p.name.clone()).collect(),
                name,
                created_at: doc.created_at,
                token_expires_at: doc.token_expires_at,
            })
            .collect())
    }

    /// The user a bearer token belongs to, if any and not expired. The users
    /// are read again only when the governance changed since the last
    /// lookup, so a request costs one small query.
    pub async fn mcp_user_for_token(&self, token: &str) -> Result<Option<String>, PlatformError> {
        if !token.starts_with(USER_TOKEN_PREFIX) {
            return Ok(None);
        }
        let version = self.store.governance_version().await?;
        let cached = {
            let cache = self.user_tokens.lock().unwrap_or_else(|p| p.into_inner());
            (cache.0 == version).then(|| cache.1.clone())
        };
        let by_hash = match cached {
            Some(by_hash) => by_hash,
            None => {
                let by_hash: Arc<UsersByToken> = Arc::new(
                    self.governance_all::<UserDoc>(MCP_USER)
                        .await?
                        .into_iter()
                        .map(|(name, doc)| (doc.token_sha256, (name, doc.token_expires_at)))
                        .collect(),
                );
                *self.user_tokens.lock().unwrap_or_else(|p| p.into_inner()) = (version, by_hash.clone());
                by_hash
            }
        };
        let now = terapi_store::unix_now();
        Ok(by_hash
            .get(&sha256_hex(token))
            .filter(|(_, expires)| expires.is_none_or(|at| now < at))
            .map(|(name, _)| name.clone()))
    }
}

fn no_such(what: &str, name: &str) -> PlatformError {
    let hint = match what {
        "toolset" => "`terapi toolset list` shows them",
        "access profile" => "`terapi profile list` shows them",
        _ => "`terapi mcp user list` shows them",
    };
    PlatformError::Governance {
        problem: GovernanceProblem::NotFound,
        message: format!("no {what} named `{name}`; {hint}"),
    }
}

fn invalid(message: String) -> PlatformError {
    PlatformError::Governance { problem: GovernanceProblem::Invalid, message }
}

fn conflict(message: String) -> PlatformError {
    PlatformError::Governance { problem: GovernanceProblem::Conflict, message }
}

/// What kind of governance change was refused (for an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GovernanceProblem {
    /// A name or value that cannot be used.
    Invalid,
    /// It names something that does not exist.
    NotFound,
    /// It would replace or orphan something that exists.
    Conflict,
}
