//! OAuth tokens as egress holds them: refreshed before they expire, once
//! across processes, and client-credential tokens fetched and cached.

use super::*;

/// How a connection's requests are authorized.
#[derive(Clone)]
pub enum Authorizer {
    /// Basic auth, or a bearer token that is never refreshed.
    Static(HeaderValue),
    /// OAuth2 tokens, refreshed before expiry and once after a 401.
    OAuth(Arc<OAuthTokens>),
    /// OAUTH2_CC: tokens the host gets with the client's id and secret.
    ClientCredentials(Arc<ClientCredentialTokens>),
}

impl Authorizer {
    pub fn from_credentials(credentials: &Credentials) -> Authorizer {
        Authorizer::Static(authorization_header(credentials))
    }

    pub(super) async fn header(&self) -> Result<HeaderValue, EgressError> {
        match self {
            Authorizer::Static(header) => Ok(header.clone()),
            Authorizer::OAuth(tokens) => tokens.header().await,
            Authorizer::ClientCredentials(tokens) => tokens.header().await,
        }
    }

    /// After a 401 to a request sent with `used`: whether a newer token is
    /// now there to retry with.
    pub(super) async fn renew_after_unauthorized(&self, used: &HeaderValue) -> Result<bool, EgressError> {
        match self {
            Authorizer::Static(_) => Ok(false),
            Authorizer::OAuth(tokens) => tokens.renew_after_unauthorized(used).await,
            Authorizer::ClientCredentials(tokens) => tokens.renew_after_unauthorized(used).await,
        }
    }
}

/// One connection's OAuth tokens. The lock makes refreshes single-flight:
/// calls that find the token stale while another refreshes wait for it and
/// use the new token.
pub struct OAuthTokens {
    current: tokio::sync::Mutex<TokenState>,
    refresher: Option<TokenRefresher>,
    /// Learns each new token, so text echoing it is scrubbed like the first.
    redactor: Redactor,
    http: HttpClient,
    spec: ProviderSpec,
    config: std::collections::BTreeMap<String, String>,
}

pub(super) struct TokenState {
    header: HeaderValue,
    refresh_token: Option<Secret>,
    expires_at: Option<u64>,
}

/// Refresh this long before the provider's stated expiry.
pub(super) const REFRESH_MARGIN_SECS: u64 = 60;

impl OAuthTokens {
    pub fn new(
        credentials: &Credentials,
        refresher: Option<TokenRefresher>,
        redactor: Redactor,
        http: HttpClient,
        spec: ProviderSpec,
        config: std::collections::BTreeMap<String, String>,
    ) -> OAuthTokens {
        let (refresh_token, expires_at) = match credentials {
            Credentials::OAuth2 { refresh_token, expires_at, .. } => (refresh_token.clone(), *expires_at),
            _ => (None, None),
        };
        let state = TokenState { header: authorization_header(credentials), refresh_token, expires_at };
        OAuthTokens { current: tokio::sync::Mutex::new(state), refresher, redactor, http, spec, config }
    }

    pub(super) async fn header(&self) -> Result<HeaderValue, EgressError> {
        let mut state = self.current.lock().await;
        if expiring(state.expires_at) {
            self.refresh(&mut state).await?;
        }
        Ok(state.header.clone())
    }

    pub(super) async fn renew_after_unauthorized(&self, used: &HeaderValue) -> Result<bool, EgressError> {
        let mut state = self.current.lock().await;
        if state.header != *used {
            return Ok(true); // refreshed by another call meanwhile
        }
        self.refresh(&mut state).await
    }

    /// Refreshes under the lock; `false` when there is no way to refresh.
    /// With coordination, under the connection's store-wide lock too: a
    /// newer token another process saved is used rather than refreshed
    /// again, and `invalid_grant` counts as a revocation only when the
    /// newest stored refresh token was refused.
    pub(super) async fn refresh(&self, state: &mut TokenState) -> Result<bool, EgressError> {
        let Some(refresher) = &self.refresher else {
            return Ok(false);
        };
        let Some(coordination) = &refresher.coordination else {
            return match self.refresh_once(refresher, state).await {
                Ok(renewed) => Ok(renewed),
                Err(refused) => Err(self.refused(refresher, refused).await),
            };
        };
        coordination.acquire().await.map_err(|e| {
            EgressError::Transport(format!("waiting to refresh the access token: {e}; try again shortly"))
        })?;
        let result = self.refresh_coordinated(refresher, coordination.as_ref(), state).await;
        coordination.release().await;
        match result {
            Ok(renewed) => Ok(renewed),
            Err(refused) => Err(self.refused(refresher, refused).await),
        }
    }

    pub(super) async fn refresh_coordinated(
        &self,
        refresher: &TokenRefresher,
        coordination: &dyn oauth::RefreshCoordination,
        state: &mut TokenState,
    ) -> Result<bool, RefreshRefused> {
        // Another process may have refreshed while this one waited.
        if self.adopt_stored(coordination, state).await && !expiring(state.expires_at) {
            return Ok(true);
        }
        match self.refresh_once(refresher, state).await {
            // The refresh token may have been spent by a process that saved
            // a newer one after this session read it: try that one, once.
            Err(RefreshRefused::Provider(OAuthError::Revoked(reason))) => {
                if !self.adopt_stored(coordination, state).await {
                    return Err(RefreshRefused::Provider(OAuthError::Revoked(reason)));
                }
                if !expiring(state.expires_at) {
                    return Ok(true);
                }
                self.refresh_once(refresher, state).await
            }
            other => other,
        }
    }

    /// Takes the stored tokens if they differ from the session's; whether
    /// it did.
    pub(super) async fn adopt_stored(
        &self,
        coordination: &dyn oauth::RefreshCoordination,
        state: &mut TokenState,
    ) -> bool {
        let Some(stored) = coordination.stored().await else {
            return false;
        };
        let Credentials::OAuth2 { access_token, refresh_token, expires_at } = &stored else {
            return false;
        };
        let header = authorization_header(&stored);
        let same_refresh =
            refresh_token.as_ref().map(Secret::expose) == state.refresh_token.as_ref().map(Secret::expose);
        if header == state.header && same_refresh {
            return false;
        }
        self.redactor.add(access_token);
        if let Some(refresh_token) = refresh_token {
            self.redactor.add(refresh_token);
        }
        *state = TokenState { header, refresh_token: refresh_token.clone(), expires_at: *expires_at };
        true
    }

    /// One refresh with the session's refresh token; the new set is saved
    /// (`on_refresh`) before it is used.
    pub(super) async fn refresh_once(
        &self,
        refresher: &TokenRefresher,
        state: &mut TokenState,
    ) -> Result<bool, RefreshRefused> {
        let Some(refresh_token) = state.refresh_token.clone() else {
            return Ok(false);
        };
        match oauth::refresh(&self.http, &self.spec, &self.config, &refresher.client, &refresh_token).await {
            Ok(mut tokens) => {
                // A provider that answers no new refresh token means the
                // old one stays good (RFC 6749 6): keep it.
                tokens.refresh_token = tokens.refresh_token.or(Some(refresh_token));
                self.redactor.add(&tokens.access_token);
                if let Some(refresh_token) = &tokens.refresh_token {
                    self.redactor.add(refresh_token);
                }
                *state = TokenState {
                    header: authorization_header(&credentials_from(&tokens)),
                    refresh_token: tokens.refresh_token.clone(),
                    expires_at: tokens.expires_at,
                };
                (refresher.on_refresh)(tokens).await;
                Ok(true)
            }
            Err(OAuthError::Transport(e)) => Err(RefreshRefused::Transport(e)),
            Err(refused) => Err(RefreshRefused::Provider(refused)),
        }
    }

    /// The error a caller gets; a refusal by the provider is told to the
    /// embedder (the connection needs re-authorizing).
    pub(super) async fn refused(&self, refresher: &TokenRefresher, refused: RefreshRefused) -> EgressError {
        let refused = match refused {
            RefreshRefused::Transport(e) => {
                return EgressError::Transport(format!("refreshing the access token: {e}"));
            }
            RefreshRefused::Provider(refused) => refused,
        };
        let message = match refused {
            OAuthError::Revoked(reason) => format!(
                "the OAuth grant was revoked or has expired ({reason}); re-authorize this connection (nothing stored was changed)"
            ),
            other => format!("refreshing the access token failed: {other}"),
        };
        let message = self.redactor.scrub(&message);
        if let Some(told) = &refresher.on_refresh_failure {
            told(message.clone()).await;
        }
        EgressError::Reauthorize(message)
    }
}

pub(super) enum RefreshRefused {
    Transport(String),
    Provider(OAuthError),
}

pub(super) fn expiring(expires_at: Option<u64>) -> bool {
    expires_at.is_some_and(|at| at <= unix_now().saturating_add(REFRESH_MARGIN_SECS))
}

/// A process's OAUTH2_CC tokens, by connection and client: sessions are
/// made per request (`terapi serve`), and each would otherwise ask the
/// token endpoint again.
pub type ClientTokenCache = Arc<std::sync::Mutex<std::collections::HashMap<String, (HeaderValue, Option<u64>)>>>;

/// One connection's client-credentials tokens: got on first use, renewed
/// before expiry and once after a 401, single-flight under the lock.
pub struct ClientCredentialTokens {
    current: tokio::sync::Mutex<Option<(HeaderValue, Option<u64>)>>,
    cache: ClientTokenCache,
    cache_key: String,
    client_id: String,
    client_secret: Secret,
    redactor: Redactor,
    http: HttpClient,
    spec: ProviderSpec,
    config: std::collections::BTreeMap<String, String>,
}

impl ClientCredentialTokens {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        connection_id: &str,
        client_id: &str,
        client_secret: &Secret,
        cache: ClientTokenCache,
        redactor: Redactor,
        http: HttpClient,
        spec: ProviderSpec,
        config: std::collections::BTreeMap<String, String>,
    ) -> ClientCredentialTokens {
        // The secret is part of the key, so a rotated one never uses a
        // token the old one got.
        let digest =
            terapi_domain::digest::sha256_hex(format!("{connection_id}\0{client_id}\0{}", client_secret.expose()));
        let known = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&digest).cloned();
        ClientCredentialTokens {
            current: tokio::sync::Mutex::new(known),
            cache,
            cache_key: digest,
            client_id: client_id.to_string(),
            client_secret: client_secret.clone(),
            redactor,
            http,
            spec,
            config,
        }
    }

    pub(super) async fn header(&self) -> Result<HeaderValue, EgressError> {
        let mut current = self.current.lock().await;
        match &*current {
            Some((header, expires)) if !expiring(*expires) => Ok(header.clone()),
            _ => self.fetch(&mut current).await,
        }
    }

    pub(super) async fn renew_after_unauthorized(&self, used: &HeaderValue) -> Result<bool, EgressError> {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(header, _)| header != used) {
            return Ok(true);
        }
        self.fetch(&mut current).await.map(|_| true)
    }

    pub(super) async fn fetch(
        &self,
        current: &mut Option<(HeaderValue, Option<u64>)>,
    ) -> Result<HeaderValue, EgressError> {
        let tokens = oauth::client_credentials(&self.http, &self.spec, &self.config, &self.client_id, &self.client_secret)
            .await
            .map_err(|e| match e {
                OAuthError::Transport(e) => EgressError::Transport(format!("getting an access token: {e}")),
                // The endpoint's own words stay out: they are a remote's body.
                refused => {
                    let why = match refused {
                        OAuthError::Endpoint { status, .. } => format!("it answered HTTP {status}"),
                        OAuthError::BadResponse(_) => "its answer had no usable access token".to_string(),
                        other => other.to_string(),
                    };
                    EgressError::Reauthorize(self.redactor.scrub(&format!(
                        "the token endpoint refused the client credentials ({why}); give the connection a valid client id and secret"
                    )))
                }
            })?;
        self.redactor.add(&tokens.access_token);
        let mut header = HeaderValue::from_str(&format!("Bearer {}", tokens.access_token.expose()))
            .map_err(|_| EgressError::Refused("the token endpoint answered a token a header cannot carry".into()))?;
        header.set_sensitive(true);
        *current = Some((header.clone(), tokens.expires_at));
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.cache_key.clone(), (header.clone(), tokens.expires_at));
        Ok(header)
    }
}

/// The credential a token set amounts to.
pub fn credentials_from(tokens: &TokenSet) -> Credentials {
    Credentials::OAuth2 {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        expires_at: tokens.expires_at,
    }
}
