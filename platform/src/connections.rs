//! Connections: saved only once the provider accepted the credential, and
//! sessions on them that keep refreshed OAuth tokens.

use std::collections::BTreeMap;
use std::sync::Arc;

use terapi_host::connection::check_connection_id;
use terapi_host::{
    ACCOUNT_CONFIG_KEY, AuthMode, BASE_URL_CONFIG_KEY, Connection, Credentials, Session, TokenRefresher, Verification,
    oauth,
};
use terapi_store::{Store, StoreError};

use crate::{Platform, PlatformError};

/// A finished OAuth authorization.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub verification: Verification,
    /// The API base URL the token response named (Gong's
    /// `api_base_url_for_customer`), if any.
    pub base_url: Option<String>,
    /// Whether an existing connection was re-authorized (its records and
    /// checkpoints kept).
    pub replaced: bool,
}

impl Platform {
    /// A session on a saved connection. For OAuth connections whose
    /// provider has an OAuth app configured, tokens are refreshed before
    /// they expire and once after a 401, and each new set is saved before
    /// it is used.
    pub async fn session(&self, connection_id: &str) -> Result<Session, PlatformError> {
        let connection = self.store.connection(connection_id).await?;
        self.session_with_refresh(&connection)
    }

    /// A session on a connection that is not saved (credentials given for
    /// one run); nothing it does is stored.
    pub fn session_for(&self, connection: &Connection) -> Result<Session, PlatformError> {
        let spec = self.providers.get(&connection.provider)?;
        Ok(match self.components.get(&connection.provider) {
            Ok(component) => self.runtime.connect(component, spec, connection)?,
            // Auth and proxy only: no component serves this provider.
            Err(_) => self.runtime.connect_plain(spec, connection, None)?,
        })
    }

    /// A session on a connection read from the store.
    pub(crate) fn session_on(&self, connection: &Connection) -> Result<Session, PlatformError> {
        self.session_with_refresh(connection)
    }

    fn session_with_refresh(&self, connection: &Connection) -> Result<Session, PlatformError> {
        let spec = self.providers.get(&connection.provider)?;
        let refresher = match (&connection.credentials, self.oauth_clients.get(&connection.provider)) {
            (Credentials::OAuth2 { .. }, Some(client)) => Some(TokenRefresher {
                client: client.clone(),
                on_refresh: save_refreshed_tokens(self.store.clone(), connection.id.clone()),
                on_refresh_failure: Some(tell_refresh_failure(
                    self.store.clone(),
                    self.refresh_failures_told.clone(),
                    connection,
                )),
                coordination: Some(Arc::new(StoreRefreshLock {
                    store: self.store.clone(),
                    connection_id: connection.id.clone(),
                    owner_prefix: self.owner.clone(),
                    held_as: std::sync::Mutex::new(None),
                })),
            }),
            _ => None,
        };
        Ok(match self.components.get(&connection.provider) {
            Ok(component) => self.runtime.connect_with_refresh(component, spec, connection, refresher)?,
            Err(_) => self.runtime.connect_plain(spec, connection, refresher)?,
        })
    }

    /// Checks the credential with the provider (one cheap call) and saves
    /// the connection only if it was accepted, like "paste key and
    /// secret, click Save". A taken id is refused before any call.
    pub async fn create_connection(&self, connection: &Connection) -> Result<Verification, PlatformError> {
        self.create_connection_for(connection, None).await
    }

    /// `create_connection` for whom a Connect session (or the app) names:
    /// the end user, their organization and the app's tags, which the
    /// connection keeps as its tags and its auth event carries, as Nango's do.
    pub async fn create_connection_for(
        &self,
        connection: &Connection,
        owner: Option<&ConnectionOwner>,
    ) -> Result<Verification, PlatformError> {
        check_connection_id(&connection.id)?;
        if self.store.connection_summary(&connection.id).await.is_ok() {
            return Err(StoreError::ConnectionExists(connection.id.clone()).into());
        }
        let session = self.session_for(connection)?;
        let verified =
            session.verify().await.map_err(|source| PlatformError::NotSaved { what: "the credential", source })?;
        let event = auth_event(connection, owner);
        self.store.create_connection(&with_account(connection.clone(), &verified), Some(&event)).await?;
        self.keep_owner(&connection.id, owner).await?;
        Ok(verified)
    }

    /// Keeps a new connection's end user and tags.
    async fn keep_owner(&self, id: &str, owner: Option<&ConnectionOwner>) -> Result<(), PlatformError> {
        let Some(owner) = owner else { return Ok(()) };
        let user = owner.end_user();
        if user.is_some() || !owner.tags.is_empty() || owner.organization.is_some() {
            self.set_end_user(id, user.as_ref(), &owner.app_tags()).await?;
        }
        Ok(())
    }

    /// Sets who a connection is for (`None`: nobody known) and the app's
    /// tags for it. The end user's id, email and name are kept as tags
    /// too (`end_user_id`, `end_user_email`, `end_user_display_name`), as
    /// Nango does, so connections can be found by them.
    pub async fn set_end_user(
        &self,
        id: &str,
        end_user: Option<&EndUser>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), PlatformError> {
        let tags = connection_tags(end_user, tags);
        let user = end_user.map(EndUser::to_api).map(|u| u.to_string());
        let tags = serde_json::to_string(&tags).unwrap_or_else(|_| "{}".into());
        Ok(self.store.set_end_user(id, user.as_deref(), &tags).await?)
    }

    /// Sets a connection's metadata (`merge`: only the keys given change,
    /// the rest stay); returns the metadata now stored.
    pub async fn set_metadata(
        &self,
        id: &str,
        metadata: &serde_json::Map<String, serde_json::Value>,
        merge: bool,
    ) -> Result<serde_json::Value, PlatformError> {
        let mut stored = match (merge, self.store.connection_summary(id).await?.metadata) {
            (true, Some(serde_json::Value::Object(current))) => current,
            _ => serde_json::Map::new(),
        };
        stored.extend(metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
        let stored = serde_json::Value::Object(stored);
        self.store.set_metadata(id, Some(&stored.to_string())).await?;
        Ok(stored)
    }

    /// Replaces a saved connection's credential, after the provider accepted
    /// the new one; id, config, checkpoints and records stay. A rejected
    /// credential changes nothing.
    pub async fn rotate_credentials(&self, id: &str, credentials: Credentials) -> Result<Verification, PlatformError> {
        let mut connection = self.store.connection(id).await?;
        connection.credentials = credentials;
        let verified = self
            .session_for(&connection)?
            .verify()
            .await
            .map_err(|source| PlatformError::NotSaved { what: "the new credential (the old one is kept)", source })?;
        let event = crate::events::auth_event(
            id,
            &connection.provider,
            terapi_store::auth_mode_name(&connection.credentials),
            None,
            "override",
            &BTreeMap::new(),
        );
        self.store.rotate_credentials(id, &connection.credentials, Some(&event)).await?;
        Ok(verified)
    }

    /// Checks a saved connection's credential and notes when it last worked.
    pub async fn verify(&self, id: &str) -> Result<Verification, PlatformError> {
        let verified = self.session(id).await?.verify().await?;
        self.store.mark_verified(id).await?;
        Ok(verified)
    }

    pub async fn delete_connection(&self, id: &str) -> Result<(), PlatformError> {
        Ok(self.store.delete_connection(id).await?)
    }

    /// The OAuth scopes to ask an end user for, fewest first: those every
    /// connection needs (verification) and those of the `syncs` and
    /// `actions` named, or, naming none, of every sync and every read-only
    /// action: a write (uploading a call, erasing a person's data) is asked
    /// for only by name, or with `ScopeChoice::Everything`.
    pub async fn oauth_scopes(&self, provider: &str, choice: &ScopeChoice) -> Result<Vec<String>, PlatformError> {
        let description = self.describe(provider).await?;
        let mut scopes: std::collections::BTreeSet<String> =
            description.requirements.oauth2_base_scopes.iter().cloned().collect();
        match choice {
            ScopeChoice::Everything => scopes.extend(description.requirements.oauth2_scopes.iter().cloned()),
            ScopeChoice::Named(scopes_given) => scopes.extend(scopes_given.iter().cloned()),
            ScopeChoice::For { syncs, actions } if syncs.is_empty() && actions.is_empty() => {
                for sync in &description.syncs {
                    scopes.extend(sync.scopes.iter().cloned());
                }
                for action in description.actions.iter().filter(|a| a.read_only) {
                    scopes.extend(action.scopes.iter().cloned());
                }
            }
            ScopeChoice::For { syncs, actions } => {
                for name in syncs {
                    let sync = description
                        .syncs
                        .iter()
                        .find(|s| &s.name == name)
                        .ok_or_else(|| PlatformError::NoSync { provider: provider.to_string(), sync: name.clone() })?;
                    scopes.extend(sync.scopes.iter().cloned());
                }
                for name in actions {
                    let action = description
                        .actions
                        .iter()
                        .find(|a| &a.name == name)
                        .ok_or_else(|| PlatformError::NoAction(name.clone()))?;
                    scopes.extend(action.scopes.iter().cloned());
                }
            }
        }
        Ok(scopes.into_iter().collect())
    }

    /// The URL an end user opens to grant `provider` access to `scopes`;
    /// `state` must come back with the redirect.
    pub async fn authorization_url(
        &self,
        provider: &str,
        redirect_uri: &str,
        state: &str,
        scopes: &[String],
    ) -> Result<String, PlatformError> {
        let spec = self.oauth_provider(provider)?;
        let client = self.oauth_client(provider, redirect_uri)?;
        Ok(oauth::authorization_url(spec, &BTreeMap::new(), &client, state, scopes)?.to_string())
    }

    /// Exchanges the code from the redirect, checks the token with the
    /// provider, and saves the connection (a new one, or new tokens for an
    /// existing one, whose records and checkpoints stay).
    pub async fn complete_authorization(
        &self,
        id: &str,
        provider: &str,
        code: &str,
        redirect_uri: &str,
        owner: Option<&ConnectionOwner>,
    ) -> Result<Authorization, PlatformError> {
        check_connection_id(id)?;
        let spec = self.oauth_provider(provider)?;
        let client = self.oauth_client(provider, redirect_uri)?;
        let tokens = oauth::exchange_code(self.runtime.http_client(), spec, &BTreeMap::new(), &client, code).await?;
        let connection = Connection {
            id: id.to_string(),
            provider: provider.to_string(),
            credentials: terapi_host::egress::credentials_from(&tokens),
            config: tokens.metadata.clone(),
        };
        let verification = self
            .session_for(&connection)?
            .verify()
            .await
            .map_err(|source| PlatformError::NotSaved { what: "the authorization", source })?;
        let connection = with_account(connection, &verification);
        let replaced = self.store.connection_summary(id).await.is_ok();
        if replaced {
            self.store.save_tokens(id, &connection.credentials, &connection.config).await?;
            // Authorized again (a reconnect link): Nango's `override`.
            let event = crate::events::auth_event(id, provider, "OAUTH2", None, "override", &BTreeMap::new());
            if let Err(e) = self.store.record_event(&event).await {
                tracing::warn!("the re-authorization of `{id}` could not be recorded for its webhook: {e}");
            }
        } else {
            self.store.create_connection(&connection, Some(&auth_event(&connection, owner))).await?;
            self.keep_owner(id, owner).await?;
        }
        Ok(Authorization { verification, base_url: connection.config.get(BASE_URL_CONFIG_KEY).cloned(), replaced })
    }

    fn oauth_provider(&self, provider: &str) -> Result<&terapi_host::ProviderSpec, PlatformError> {
        let spec = self.providers.get(provider)?;
        if spec.auth_mode != AuthMode::OAuth2 {
            return Err(PlatformError::NotOAuth(provider.to_string()));
        }
        Ok(spec)
    }

    fn oauth_client(&self, provider: &str, redirect_uri: &str) -> Result<terapi_host::OAuthClient, PlatformError> {
        let mut client =
            self.oauth_clients.get(provider).cloned().ok_or_else(|| PlatformError::NoOAuthClient(provider.into()))?;
        client.redirect_uri = redirect_uri.to_string();
        Ok(client)
    }
}

/// Who a connection is for, as an app describes them (Nango's
/// `EndUserInput`: `id`, and optionally `email`, `display_name`, `tags`,
/// `organization: {id, display_name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    pub id: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub organization: Option<(String, Option<String>)>,
}

impl EndUser {
    /// From the app's JSON; `None` without a string `id`.
    pub fn from_input(input: &serde_json::Value) -> Option<EndUser> {
        let text = |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
        let id = text(input, "id").filter(|id| !id.is_empty())?;
        let tags = input
            .get("tags")
            .and_then(|t| t.as_object())
            .map(|t| t.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        let organization = input.get("organization").and_then(|o| Some((text(o, "id")?, text(o, "display_name"))));
        Some(EndUser { id, email: text(input, "email"), display_name: text(input, "display_name"), tags, organization })
    }

    /// Nango's `ApiEndUser`.
    pub fn to_api(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "display_name": self.display_name,
            "email": self.email,
            "tags": if self.tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(self.tags) },
            "organization": self.organization.as_ref().map(|(id, name)| serde_json::json!({"id": id, "display_name": name})),
        })
    }
}

/// Who a connection is for, as a Connect session or the app names them
/// (Nango's `end_user`, `organization` and `tags`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionOwner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl ConnectionOwner {
    /// As a Connect session keeps it. Sessions written before sessions kept
    /// an owner hold the bare end user: read as such.
    pub fn from_stored(text: &str) -> ConnectionOwner {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let is_owner = value.as_object().is_some_and(|o| {
            o.keys().all(|k| matches!(k.as_str(), "end_user" | "organization" | "tags")) && !o.contains_key("id")
        });
        if is_owner {
            serde_json::from_value(value).unwrap_or_default()
        } else {
            ConnectionOwner { end_user: Some(value).filter(|v| v.is_object()), ..ConnectionOwner::default() }
        }
    }

    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// The end user, with the session's organization when theirs is not given.
    pub fn end_user(&self) -> Option<EndUser> {
        let mut user = EndUser::from_input(self.end_user.as_ref()?)?;
        if user.organization.is_none() {
            user.organization = self.organization().map(|(id, name)| (id.to_string(), name.map(str::to_string)));
        }
        Some(user)
    }

    fn organization(&self) -> Option<(&str, Option<&str>)> {
        let organization = self.organization.as_ref()?;
        let id = organization.get("id")?.as_str()?;
        Some((id, organization.get("display_name").and_then(|n| n.as_str())))
    }

    /// The app's tags with the organization's (Nango's `organization_id`,
    /// `organization_display_name`), without the end user's own.
    pub fn app_tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.tags.clone();
        if let Some((id, name)) = self.organization() {
            tags.insert("organization_id".into(), id.into());
            if let Some(name) = name {
                tags.insert("organization_display_name".into(), name.into());
            }
        }
        tags
    }
}

/// A connection's tags: the app's, with the end user's id, email and name
/// (`end_user_id`, `end_user_email`, `end_user_display_name`) and their
/// organization's, as Nango keeps them.
fn connection_tags(end_user: Option<&EndUser>, tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags = tags.clone();
    if let Some(user) = end_user {
        tags.insert("end_user_id".into(), user.id.clone());
        for (key, value) in [("end_user_email", &user.email), ("end_user_display_name", &user.display_name)] {
            if let Some(value) = value {
                tags.insert(key.into(), value.clone());
            }
        }
        if let Some((id, name)) = &user.organization {
            tags.entry("organization_id".into()).or_insert_with(|| id.clone());
            if let Some(name) = name {
                tags.entry("organization_display_name".into()).or_insert_with(|| name.clone());
            }
        }
    }
    tags
}

/// Nango's auth webhook for a new connection: the end user (`endUserId`,
/// `organizationId`, `endUserEmail`, their tags) and the connection's tags.
fn auth_event(connection: &Connection, owner: Option<&ConnectionOwner>) -> terapi_store::NewEvent {
    let user = owner.and_then(ConnectionOwner::end_user);
    let end_user = user.as_ref().map(|user| {
        let mut end_user = serde_json::json!({ "endUserId": user.id, "endUserEmail": user.email, "tags": user.tags });
        if let Some((id, _)) = &user.organization {
            end_user["organizationId"] = id.clone().into();
        }
        end_user
    });
    let tags = owner.map(|o| connection_tags(user.as_ref(), &o.app_tags())).unwrap_or_default();
    crate::events::auth_event(
        &connection.id,
        &connection.provider,
        terapi_store::auth_mode_name(&connection.credentials),
        end_user.as_ref(),
        "creation",
        &tags,
    )
}

/// The connection with the account its verification named kept in its
/// config, so requests of every connection of that account share one
/// budget (Gong's limits are per company).
fn with_account(mut connection: Connection, verified: &Verification) -> Connection {
    if let Some(account) = verified.account.as_ref().filter(|a| !a.is_empty()) {
        connection.config.insert(ACCOUNT_CONFIG_KEY.to_string(), account.clone());
    }
    connection
}

/// One refresh failure an app hears of per connection in this long: every
/// call of a connection whose grant is gone fails the same way.
const REFRESH_FAILURE_QUIET: std::time::Duration = std::time::Duration::from_secs(600);

/// Writes Nango's auth webhook for a failed refresh (`operation: refresh`,
/// `success: false`): the app asks its user to authorize again.
fn tell_refresh_failure(
    store: Arc<dyn Store>,
    told: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    connection: &Connection,
) -> terapi_host::oauth::OnRefreshFailure {
    let (id, provider) = (connection.id.clone(), connection.provider.clone());
    Arc::new(move |reason: String| {
        let (store, id, provider) = (store.clone(), id.clone(), provider.clone());
        let quiet = {
            let mut told = told.lock().unwrap_or_else(|p| p.into_inner());
            let recent = told.get(&id).is_some_and(|at| at.elapsed() < REFRESH_FAILURE_QUIET);
            if !recent {
                told.insert(id.clone(), std::time::Instant::now());
            }
            recent
        };
        Box::pin(async move {
            if quiet {
                return;
            }
            let event = crate::events::refresh_failure_event(&id, &provider, &reason);
            if let Err(e) = store.record_event(&event).await {
                tracing::warn!("the refresh failure of `{id}` could not be recorded for its webhook: {e}");
            }
        })
    })
}

/// A connection's refreshes, one at a time across every process on the
/// store: the lock is a row of the store's `locks`, which lapses if its
/// holder dies mid-refresh.
struct StoreRefreshLock {
    store: Arc<dyn Store>,
    connection_id: String,
    owner_prefix: String,
    /// The owner name of the lock this session holds now.
    held_as: std::sync::Mutex<Option<String>>,
}

/// Long enough for a token endpoint to answer; a dead holder's lock lapses
/// after it.
const REFRESH_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl terapi_host::oauth::RefreshCoordination for StoreRefreshLock {
    fn acquire(&self) -> terapi_host::oauth::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            static ACQUISITIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = ACQUISITIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let owner = format!("{}:refresh{n}", self.owner_prefix);
            let name = format!("oauth-refresh:{}", self.connection_id);
            // A lapsed lock is free, so this waits at most one TTL for a
            // holder that died, plus a margin.
            let deadline = std::time::Instant::now() + REFRESH_LOCK_TTL + std::time::Duration::from_secs(5);
            let mut pause = std::time::Duration::from_millis(20);
            loop {
                match self.store.try_lock(&name, &owner, REFRESH_LOCK_TTL).await {
                    Ok(true) => break,
                    Ok(false) if std::time::Instant::now() < deadline => {}
                    Ok(false) => return Err("another refresh of this connection has held its lock too long".into()),
                    Err(e) if e.is_unavailable() && std::time::Instant::now() < deadline => {}
                    Err(e) => return Err(e.to_string()),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            *self.held_as.lock().unwrap_or_else(|p| p.into_inner()) = Some(owner);
            Ok(())
        })
    }

    fn release(&self) -> terapi_host::oauth::BoxFuture<'_, ()> {
        Box::pin(async move {
            let owner = self.held_as.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(owner) = owner {
                let name = format!("oauth-refresh:{}", self.connection_id);
                if let Err(e) = self.store.unlock(&name, &owner).await {
                    tracing::warn!("the refresh lock of `{}` was not released ({e}); it lapses", self.connection_id);
                }
            }
        })
    }

    fn stored(&self) -> terapi_host::oauth::BoxFuture<'_, Option<Credentials>> {
        Box::pin(async move {
            match self.store.connection(&self.connection_id).await {
                Ok(connection) => Some(connection.credentials),
                Err(e) => {
                    tracing::warn!("the stored tokens of `{}` could not be read: {e}", self.connection_id);
                    None
                }
            }
        })
    }
}

/// Saves each refreshed token set (and the metadata that came with it,
/// such as a new base URL) into the store.
fn save_refreshed_tokens(store: Arc<dyn Store>, id: String) -> terapi_host::oauth::OnRefresh {
    Arc::new(move |tokens| {
        let store = store.clone();
        let id = id.clone();
        Box::pin(async move {
            let credentials = terapi_host::egress::credentials_from(&tokens);
            if let Err(e) = store.save_tokens(&id, &credentials, &tokens.metadata).await {
                tracing::warn!("the refreshed token of `{id}` could not be saved: {e}");
            }
        })
    })
}

/// Which OAuth scopes to ask for (see [`Platform::oauth_scopes`]).
#[derive(Debug, Clone)]
pub enum ScopeChoice {
    /// What these syncs and actions need; none named: every sync and every
    /// read-only action.
    For { syncs: Vec<String>, actions: Vec<String> },
    /// These exactly (and those every connection needs).
    Named(Vec<String>),
    /// Everything the component's syncs and actions could use.
    Everything,
}
