//! Sign-in through an upstream OpenID provider, with the `openidconnect` crate: discovery
//! (at the provider's own path when it has one, as Pro Santé Connect does), the authorization
//! code flow with PKCE S256 and a nonce, and the id_token's signature, issuer, audience, nonce
//! and expiry verified before any claim is read.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use serde_json::{Map, Value};

use crate::config::IdentityProvider;

/// How long a provider's discovery document and keys are reused.
const METADATA_TTL: Duration = Duration::from_secs(300);

/// What went wrong with the upstream provider; shown to the person signing in.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UpstreamError(pub String);

fn fail(message: impl Into<String>) -> UpstreamError {
    UpstreamError(message.into())
}

/// The HTTP client for providers: no redirects followed (OAuth 2.0 security advice).
fn http() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(15))
        .build()
}

/// The configured providers and their discovered metadata.
pub struct Providers {
    configured: Vec<IdentityProvider>,
    discovered: Mutex<Vec<(String, Instant, CoreProviderMetadata)>>,
    /// `{root}/auth/callback`, registered at each provider.
    callback: String,
}

/// Where to send the browser, and what to remember until it comes back.
pub struct Redirect {
    pub url: String,
    pub verifier: String,
    pub nonce: String,
}

impl Providers {
    pub fn new(configured: Vec<IdentityProvider>, callback: String) -> Providers {
        Providers {
            configured,
            discovered: Mutex::new(Vec::new()),
            callback,
        }
    }

    pub fn all(&self) -> &[IdentityProvider] {
        &self.configured
    }

    pub fn get(&self, id: &str) -> Option<&IdentityProvider> {
        self.configured.iter().find(|p| p.id == id)
    }

    /// The provider's metadata and keys, discovered at most every five minutes.
    fn metadata(&self, provider: &IdentityProvider) -> Result<CoreProviderMetadata, UpstreamError> {
        let mut cache = self.discovered.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(_, at, _)| at.elapsed() < METADATA_TTL);
        if let Some((_, _, metadata)) = cache.iter().find(|(id, _, _)| *id == provider.id) {
            return Ok(metadata.clone());
        }
        let url = provider.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                provider.issuer.trim_end_matches('/')
            )
        });
        let unreachable = |e: &dyn std::fmt::Display| {
            fail(format!("{} cannot be reached ({url}): {e}", provider.name))
        };
        let text = http()
            .get(&url)
            .call()
            .map_err(|e| unreachable(&e))?
            .into_string()
            .map_err(|e| unreachable(&e))?;
        let metadata: CoreProviderMetadata = serde_json::from_str(&text).map_err(|e| {
            fail(format!(
                "{}'s discovery document is not usable: {e}",
                provider.name
            ))
        })?;
        if metadata.issuer().as_str().trim_end_matches('/') != provider.issuer.trim_end_matches('/')
        {
            return Err(fail(format!(
                "{}'s discovery document names the issuer {}, not the configured {}",
                provider.name,
                metadata.issuer().as_str(),
                provider.issuer
            )));
        }
        // Fetched here rather than by the crate, which refuses `application/jwk-set+json`.
        let keys_url = metadata.jwks_uri().url().as_str();
        let no_keys = |e: &dyn std::fmt::Display| {
            fail(format!(
                "{}'s keys cannot be fetched ({keys_url}): {e}",
                provider.name
            ))
        };
        let text = http()
            .get(keys_url)
            .call()
            .map_err(|e| no_keys(&e))?
            .into_string()
            .map_err(|e| no_keys(&e))?;
        let jwks: CoreJsonWebKeySet = serde_json::from_str(&text).map_err(|e| no_keys(&e))?;
        let metadata = metadata.set_jwks(jwks);
        cache.push((provider.id.clone(), Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(
        &self,
        provider: &IdentityProvider,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        UpstreamError,
    > {
        let metadata = self.metadata(provider)?;
        let redirect = RedirectUrl::new(self.callback.clone())
            .map_err(|e| fail(format!("the callback URL is not a URL: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            provider.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's authorization URL for the request `state`.
    pub fn start(
        &self,
        provider: &IdentityProvider,
        state: &str,
    ) -> Result<Redirect, UpstreamError> {
        let client = self.client(provider)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_string();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state.clone()),
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        let scopes = if provider.scopes.is_empty() {
            vec!["openid".to_string()]
        } else {
            provider.scopes.clone()
        };
        for scope in scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(acr) = &provider.acr_values {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
        }
        let (url, _, nonce) = request.url();
        Ok(Redirect {
            url: url.to_string(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Exchanges the provider's `code`, verifies the id_token, and returns its claims merged
    /// with the userinfo's (Pro Santé Connect gives the national identifier there).
    pub fn finish(
        &self,
        provider: &IdentityProvider,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let client = self.client(provider)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| fail(format!("{} has no token endpoint: {e}", provider.name)))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request(&http())
            .map_err(|e| fail(format!("{} refused the sign-in code: {e}", provider.name)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| fail(format!("{} returned no id_token", provider.name)))?;
        id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_string()))
            .map_err(|e| fail(format!("{}'s id_token is not valid: {e}", provider.name)))?;
        // Verified above: only now are its claims read, all of them.
        let text = id_token.to_string();
        let payload = text.split('.').nth(1).unwrap_or("");
        let mut claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        if !claims.contains_key(&provider.identifier_claim) {
            if let Some(endpoint) = self.metadata(provider)?.userinfo_endpoint() {
                let info = http()
                    .get(endpoint.as_str())
                    .set(
                        "Authorization",
                        &format!("Bearer {}", response.access_token().secret()),
                    )
                    .call()
                    .ok()
                    .and_then(|r| r.into_json::<Map<String, Value>>().ok());
                // The userinfo must be about the same person.
                if let Some(info) = info.filter(|i| i.get("sub") == claims.get("sub")) {
                    for (k, v) in info {
                        claims.entry(k).or_insert(v);
                    }
                }
            }
        }
        Ok(claims)
    }
}

/// Whether `issuer` parses as an issuer URL (checked at start so that a typo is reported
/// before anyone tries to sign in).
pub fn check_issuer(provider: &IdentityProvider) -> Result<(), String> {
    IssuerUrl::new(provider.issuer.clone())
        .map(|_| ())
        .map_err(|e| format!("identity_provider '{}': issuer: {e}", provider.id))
}
