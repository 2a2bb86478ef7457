//! Registered clients (`carnet client add|list|remove`) and how each kind proves who it is at
//! the token endpoint: a public client by its id (and PKCE), a confidential one by its
//! secret, an asymmetric or backend one by a JWT it signs with its own key
//! (`private_key_jwt`).

use serde_json::Value;

use super::authorize::{random_token, sha256};
use super::jwt::{self, VerifyingKey};
use crate::access::Scopes;
use crate::store::auth::{now_seconds, ClientRow};
use crate::store::{Store, StoreError};

/// `client_assertion_type` of `private_key_jwt`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The signing algorithms accepted for client assertions (SMART Backend Services).
pub const ASSERTION_ALGORITHMS: &[&str] = &["RS384", "ES384"];
/// How far ahead a client assertion may expire.
const MAX_ASSERTION_SECONDS: i64 = 300;
/// Clock difference tolerated between client and server.
const LEEWAY_SECONDS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A browser or mobile app: no secret, PKCE.
    Public,
    /// A server-side app with a shared secret.
    Confidential,
    /// An app that signs assertions with its key, in the authorization code flow.
    Asymmetric,
    /// A system that gets `system/` tokens with `client_credentials`.
    Backend,
}

impl ClientKind {
    pub fn parse(text: &str) -> Option<ClientKind> {
        match text {
            "public" => Some(ClientKind::Public),
            "confidential" => Some(ClientKind::Confidential),
            "asymmetric" => Some(ClientKind::Asymmetric),
            "backend" => Some(ClientKind::Backend),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Public => "public",
            ClientKind::Confidential => "confidential",
            ClientKind::Asymmetric => "asymmetric",
            ClientKind::Backend => "backend",
        }
    }

    fn uses_keys(self) -> bool {
        matches!(self, ClientKind::Asymmetric | ClientKind::Backend)
    }
}

/// What `carnet client add` registers.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: String,
    pub kind: ClientKind,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: String,
    pub jwks: Option<String>,
    pub jwks_url: Option<String>,
}

/// Registers a client; returns the secret of a confidential client (shown once, stored as
/// its SHA-256).
pub fn register(store: &Store, new: &NewClient) -> Result<Option<String>, String> {
    if new.client_id.is_empty()
        || !new
            .client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err(format!(
            "client id '{}': use letters, digits and - . _ ~ only",
            new.client_id
        ));
    }
    if Scopes::parse(&new.scopes).is_empty() {
        return Err(format!(
            "--scope '{}' holds no scope this server knows (for instance 'system/*.rs' or \
             'openid fhirUser launch/patient patient/*.rs')",
            new.scopes
        ));
    }
    match new.kind {
        ClientKind::Backend | ClientKind::Asymmetric
            if new.jwks.is_none() == new.jwks_url.is_none() =>
        {
            return Err(format!(
                "a {} client needs exactly one of --jwks (a JWKS document) and --jwks-url",
                new.kind.as_str()
            ))
        }
        ClientKind::Public | ClientKind::Confidential | ClientKind::Asymmetric
            if new.redirect_uris.is_empty() =>
        {
            return Err(format!(
                "a {} client needs at least one --redirect-uri",
                new.kind.as_str()
            ))
        }
        _ => {}
    }
    if let Some(jwks) = &new.jwks {
        let keys = parse_jwks(jwks)?;
        if keys.is_empty() {
            return Err("--jwks holds no RSA or P-384 key".into());
        }
    }
    if let Some(url) = &new.jwks_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("--jwks-url '{url}' is not an http(s) URL"));
        }
    }
    for uri in &new.redirect_uris {
        if !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.contains('#') {
            return Err(format!(
                "--redirect-uri '{uri}' must be an absolute http(s) URL without a fragment"
            ));
        }
    }
    let secret = (new.kind == ClientKind::Confidential).then(random_token);
    let row = ClientRow {
        client_id: new.client_id.clone(),
        kind: new.kind.as_str().into(),
        name: new.name.clone(),
        secret_sha256: secret.as_deref().map(sha256),
        jwks: new.jwks.clone(),
        jwks_url: new.jwks_url.clone(),
        redirect_uris: Value::from(new.redirect_uris.clone()).to_string(),
        scopes: new.scopes.clone(),
        created: now_seconds() * 1_000_000,
    };
    if !store.add_client(&row).map_err(|e| e.to_string())? {
        return Err(format!(
            "a client '{}' is already registered; remove it first",
            new.client_id
        ));
    }
    Ok(secret)
}

/// The keys of a JWKS document, with their `kid`s.
fn parse_jwks(text: &str) -> Result<Vec<(Option<String>, VerifyingKey)>, String> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no 'keys' array")?;
    Ok(keys
        .iter()
        .filter_map(Value::as_object)
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .filter_map(|k| {
            let kid = k.get("kid").and_then(Value::as_str).map(str::to_string);
            VerifyingKey::from_jwk(k).map(|key| (kid, key))
        })
        .collect())
}

/// A client authenticated at the token endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<String>,
    pub scopes: Scopes,
}

impl Client {
    pub fn from_stored(row: &ClientRow) -> Result<Client, StoreError> {
        Ok(Client {
            client_id: row.client_id.clone(),
            name: row.name.clone(),
            kind: ClientKind::parse(&row.kind).ok_or_else(|| {
                StoreError::Internal(format!("client {} has kind {}", row.client_id, row.kind))
            })?,
            redirect_uris: serde_json::from_str(&row.redirect_uris)
                .map_err(|e| StoreError::Internal(e.to_string()))?,
            scopes: Scopes::parse(&row.scopes),
        })
    }
}

/// Why a client could not be authenticated: an OAuth `invalid_client` (401), or the store.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> ClientError {
    ClientError::Invalid(message.into())
}

/// How the client presented itself at the token endpoint.
pub enum Credentials<'a> {
    /// `client_id` alone (a public client).
    Id(&'a str),
    /// `client_id` and `client_secret` (Basic or in the form).
    Secret { id: &'a str, secret: &'a str },
    /// A signed `client_assertion`.
    Assertion {
        assertion: &'a str,
        token_url: &'a str,
    },
}

/// The registered client behind `credentials`, if they prove it.
pub fn authenticate(store: &Store, credentials: &Credentials) -> Result<Client, ClientError> {
    match credentials {
        Credentials::Id(id) => {
            let client = known(store, id)?;
            if client.kind != ClientKind::Public {
                return Err(invalid(format!(
                    "client '{id}' is {} and must authenticate",
                    client.kind.as_str()
                )));
            }
            Ok(client)
        }
        Credentials::Secret { id, secret } => {
            let row = store
                .client(id)?
                .ok_or_else(|| invalid(format!("no client '{id}' is registered")))?;
            let matches = row
                .secret_sha256
                .as_deref()
                .is_some_and(|stored| stored == sha256(secret).as_slice());
            if !matches {
                return Err(invalid(format!("wrong secret for client '{id}'")));
            }
            Ok(Client::from_stored(&row)?)
        }
        Credentials::Assertion {
            assertion,
            token_url,
        } => verify_assertion(store, assertion, token_url),
    }
}

fn known(store: &Store, id: &str) -> Result<Client, ClientError> {
    let row = store
        .client(id)?
        .ok_or_else(|| invalid(format!("no client '{id}' is registered")))?;
    Ok(Client::from_stored(&row)?)
}

/// Checks a `private_key_jwt` assertion: issuer and subject the client, audience the token
/// URL, a signature by one of the client's keys, an expiry at most five minutes ahead, and a
/// `jti` never used before.
fn verify_assertion(
    store: &Store,
    assertion: &str,
    token_url: &str,
) -> Result<Client, ClientError> {
    let jwt = jwt::decode(assertion).map_err(|e| invalid(format!("client_assertion: {e}")))?;
    let iss = jwt
        .str_claim("iss")
        .ok_or_else(|| invalid("client_assertion: no 'iss' (the client id)"))?;
    if jwt.str_claim("sub") != Some(iss) {
        return Err(invalid(
            "client_assertion: 'sub' must equal 'iss', the client id",
        ));
    }
    let row = store
        .client(iss)?
        .ok_or_else(|| invalid(format!("client_assertion: no client '{iss}' is registered")))?;
    let client = Client::from_stored(&row)?;
    if !client.kind.uses_keys() {
        return Err(invalid(format!(
            "client '{iss}' is {} and has no keys to sign an assertion with",
            client.kind.as_str()
        )));
    }
    if !jwt.has_audience(token_url) {
        return Err(invalid(format!(
            "client_assertion: 'aud' must be the token URL {token_url}"
        )));
    }
    let keys = client_keys(&row)?;
    let key = match jwt.kid() {
        Some(kid) => keys.iter().find(|(k, _)| k.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or_else(|| {
        invalid(format!(
            "client_assertion: the client's JWKS has no key with kid {:?}",
            jwt.kid().unwrap_or("(none)")
        ))
    })?;
    jwt.verify(&key.1, ASSERTION_ALGORITHMS)
        .map_err(|e| invalid(format!("client_assertion: {e}")))?;
    let now = now_seconds();
    let exp = jwt
        .time_claim("exp")
        .map_err(|e| invalid(format!("client_assertion: {e}")))?
        .ok_or_else(|| invalid("client_assertion: no 'exp'"))?;
    if exp + LEEWAY_SECONDS <= now {
        return Err(invalid("client_assertion: expired"));
    }
    if exp > now + MAX_ASSERTION_SECONDS + LEEWAY_SECONDS {
        return Err(invalid(
            "client_assertion: 'exp' is more than five minutes ahead",
        ));
    }
    let jti = jwt
        .str_claim("jti")
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("client_assertion: no 'jti'"))?;
    if !store.use_client_assertion(iss, jti, exp + LEEWAY_SECONDS)? {
        return Err(invalid(
            "client_assertion: this 'jti' was used already (a replay)",
        ));
    }
    Ok(client)
}

/// The client's keys: its registered JWKS, or the one at its JWKS URL (fetched each time, so
/// that a rotated key works at once).
fn client_keys(row: &ClientRow) -> Result<Vec<(Option<String>, VerifyingKey)>, ClientError> {
    let text = match (&row.jwks, &row.jwks_url) {
        (Some(jwks), _) => jwks.clone(),
        (None, Some(url)) => ureq::get(url)
            .timeout(std::time::Duration::from_secs(10))
            .call()
            .map_err(|e| invalid(format!("cannot fetch the client's JWKS at {url}: {e}")))?
            .into_string()
            .map_err(|e| invalid(format!("cannot read the client's JWKS at {url}: {e}")))?,
        (None, None) => return Err(invalid("the client has no registered keys")),
    };
    parse_jwks(&text).map_err(|e| invalid(format!("the client's JWKS: {e}")))
}

/// `carnet client list`: one line per client.
pub fn describe(row: &ClientRow) -> String {
    let redirects: Vec<String> = serde_json::from_str(&row.redirect_uris).unwrap_or_default();
    let keys = match (&row.jwks, &row.jwks_url) {
        (Some(_), _) => " keys=jwks".to_string(),
        (None, Some(url)) => format!(" keys={url}"),
        _ => String::new(),
    };
    format!(
        "{}\t{}\t{}\tscope=\"{}\"{}{}",
        row.client_id,
        row.kind,
        row.name,
        row.scopes,
        keys,
        if redirects.is_empty() {
            String::new()
        } else {
            format!(" redirect={}", redirects.join(","))
        }
    )
}
