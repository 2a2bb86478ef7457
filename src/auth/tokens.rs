//! Access tokens: issued as RS256 JWTs whose grant is also kept in the database under their
//! `jti`, verified on every request (signature once per token, then a cache; the grant row
//! every time, so that a revocation takes effect at once on every node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::jwt::{self, SigningKey};
use crate::access::{Caller, Scopes};
use crate::store::auth::{now_seconds, GrantRow};
use crate::store::{Store, StoreError};

/// The longest an access token lives.
pub const MAX_ACCESS_TOKEN_SECONDS: i64 = 3600;
/// The longest a backend-services token lives.
pub const MAX_SYSTEM_TOKEN_SECONDS: i64 = 300;
/// Verified tokens remembered, so that only their first use costs an RSA verification.
const CACHE_CAPACITY: usize = 10_000;
/// `typ` of access tokens (RFC 9068): an id_token (`JWT`) is never taken for one.
const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Why a bearer token was refused: always a 401, with this text.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> TokenError {
    TokenError::Invalid(message.into())
}

/// What a new token grants.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub client_id: String,
    pub subject: String,
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
    pub scopes: Scopes,
    pub lifetime_seconds: i64,
    /// The authorization request or refresh-token family it comes from.
    pub origin: Option<String>,
}

/// A token handed out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub jti: String,
}

/// Issues and verifies this server's tokens.
pub struct Authority {
    key: SigningKey,
    /// The FHIR base URL: the tokens' issuer and audience.
    issuer: String,
    urls: super::Urls,
    verified: Mutex<HashMap<String, (Arc<Caller>, i64)>>,
}

impl Authority {
    /// The authority of the FHIR base `issuer`, with the database's signing key (created on
    /// first use, shared by every node and by `carnet token`).
    pub fn load(store: &Store, issuer: &str) -> Result<Authority, String> {
        let pkcs8 = store
            .server_key_or_insert("token-signing-rsa", || {
                SigningKey::generate_pkcs8().map_err(StoreError::Internal)
            })
            .map_err(|e| e.to_string())?;
        Ok(Authority {
            key: SigningKey::from_pkcs8(&pkcs8)?,
            issuer: issuer.trim_end_matches('/').to_string(),
            urls: super::Urls::new(issuer),
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn urls(&self) -> &super::Urls {
        &self.urls
    }

    /// The `jti` of `token` if this server signed it (expired or not, revoked or not).
    pub fn token_id(&self, token: &str) -> Option<String> {
        let jwt = jwt::decode(token).ok()?;
        (jwt.kid() == Some(self.key.kid()))
            .then(|| jwt.verify(self.key.verifying_key(), &["RS256"]).ok())??;
        jwt.str_claim("jti").map(str::to_string)
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs a token for `grant` after recording the grant.
    pub fn issue(&self, store: &Store, grant: &NewGrant) -> Result<Issued, StoreError> {
        let now = now_seconds();
        let lifetime = grant.lifetime_seconds.clamp(1, MAX_ACCESS_TOKEN_SECONDS);
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let scope = grant.scopes.to_string();
        store.record_grant(&GrantRow {
            jti: jti.clone(),
            client_id: grant.client_id.clone(),
            subject: grant.subject.clone(),
            fhir_user: grant.fhir_user.clone(),
            patient: grant.patient.clone(),
            scope: scope.clone(),
            issued: now,
            expires: now + lifetime,
            revoked: None,
            origin: grant.origin.clone(),
        })?;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.issuer,
            "sub": grant.subject,
            "client_id": grant.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti,
        });
        if let Some(user) = &grant.fhir_user {
            claims["fhirUser"] = Value::from(user.as_str());
        }
        if let Some(patient) = &grant.patient {
            claims["patient"] = Value::from(patient.as_str());
        }
        Ok(Issued {
            access_token: self.key.sign(ACCESS_TOKEN_TYPE, &claims),
            expires_in: lifetime,
            jti,
        })
    }

    /// An OpenID Connect id_token for `client_id` (RS256, as SMART requires), naming the
    /// signed-in person's FHIR resource in `fhirUser`.
    pub fn id_token(
        &self,
        client_id: &str,
        subject: &str,
        fhir_user: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        let now = now_seconds();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": client_id,
            "iat": now,
            "exp": now + MAX_ACCESS_TOKEN_SECONDS,
        });
        if let Some(user) = fhir_user {
            claims["fhirUser"] = Value::from(format!("{}/{user}", self.issuer));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        self.key.sign("JWT", &claims)
    }

    /// The caller `token` stands for, if it is one of this server's access tokens, unexpired
    /// and not revoked.
    pub fn verify(&self, store: &Store, token: &str) -> Result<Arc<Caller>, TokenError> {
        let now = now_seconds();
        let cached = self.cache().get(token).cloned();
        let (caller, expires) = match cached {
            Some(entry) => entry,
            None => {
                let entry = self.verify_signed(token, now)?;
                self.remember(token, &entry, now);
                entry
            }
        };
        if expires <= now {
            return Err(invalid("the access token has expired; get a new one"));
        }
        match store.grant(&caller.token_id)? {
            Some(grant) if grant.revoked.is_none() && grant.expires > now => Ok(caller),
            Some(grant) if grant.revoked.is_some() => Err(invalid("the access token was revoked")),
            _ => Err(invalid("the access token is not known to this server")),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Caller>, i64)>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, token: &str, entry: &(Arc<Caller>, i64), now: i64) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), entry.clone());
    }

    /// Everything that does not change while the token lives: format, algorithm, key,
    /// signature, type, issuer, audience, claims.
    fn verify_signed(&self, token: &str, now: i64) -> Result<(Arc<Caller>, i64), TokenError> {
        let jwt = jwt::decode(token).map_err(|e| invalid(e.0))?;
        if jwt.kid() != Some(self.key.kid()) {
            return Err(invalid(
                "the access token names a signing key (kid) this server does not have",
            ));
        }
        jwt.verify(self.key.verifying_key(), &["RS256"])
            .map_err(|e| invalid(e.0))?;
        if jwt.header.get("typ").and_then(Value::as_str) != Some(ACCESS_TOKEN_TYPE) {
            return Err(invalid(
                "this is not an access token (an id_token cannot be used as one)",
            ));
        }
        if jwt.str_claim("iss") != Some(&self.issuer) || !jwt.has_audience(&self.issuer) {
            return Err(invalid(format!(
                "the access token was not issued for this server ({})",
                self.issuer
            )));
        }
        let expires = jwt
            .time_claim("exp")
            .map_err(|e| invalid(e.0))?
            .ok_or_else(|| invalid("the access token has no expiry (exp)"))?;
        if expires <= now {
            return Err(invalid("the access token has expired; get a new one"));
        }
        let text = |name: &str| {
            jwt.str_claim(name)
                .map(str::to_string)
                .ok_or_else(|| invalid(format!("the access token lacks '{name}'")))
        };
        let caller = Caller {
            client_id: text("client_id")?,
            subject: text("sub")?,
            fhir_user: jwt.str_claim("fhirUser").map(str::to_string),
            patient: jwt.str_claim("patient").map(str::to_string),
            scopes: Scopes::parse(&text("scope")?),
            token_id: text("jti")?,
        };
        Ok((Arc::new(caller), expires))
    }
}
