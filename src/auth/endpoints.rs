//! The SMART and OAuth endpoints: discovery (`.well-known/smart-configuration`,
//! `.well-known/openid-configuration`), the token endpoint (Backend Services'
//! `client_credentials` with `private_key_jwt`), introspection (RFC 7662), revocation
//! (RFC 7009) and the JWKS. Errors follow RFC 6749: a JSON body with `error` and
//! `error_description`, `invalid_client` as a 401.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::clients::{self, ClientError, ClientKind, Credentials};
use super::tokens::{NewGrant, TokenError, MAX_SYSTEM_TOKEN_SECONDS};
use super::AuthContext;
use crate::access::{Level, Scopes};
use crate::store::auth::{now_seconds, RefreshRow};
use crate::store::StoreError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The largest form accepted at these endpoints.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Registers the endpoints, for a server whose state is `S`.
pub fn configure<S: AuthContext>(cfg: &mut web::ServiceConfig) {
    for prefix in ["", "/fhir"] {
        cfg.route(
            &format!("{prefix}/.well-known/smart-configuration"),
            web::get().to(smart_configuration::<S>),
        )
        .route(
            &format!("{prefix}/.well-known/openid-configuration"),
            web::get().to(openid_configuration::<S>),
        );
    }
    super::authorize::configure::<S>(cfg);
    cfg.route("/auth/token", web::post().to(token::<S>))
        .route("/auth/introspect", web::post().to(introspect::<S>))
        .route("/auth/revoke", web::post().to(revoke::<S>))
        .route("/auth/jwks", web::get().to(jwks::<S>));
}

/// An OAuth error response.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            code,
            description: description.into(),
        }
    }

    fn request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn client(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> OAuthError {
        log::error!("authorization endpoint: {e}");
        OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the authorization server cannot reach its database; retry",
        )
    }
}

impl From<ClientError> for OAuthError {
    fn from(e: ClientError) -> OAuthError {
        match e {
            ClientError::Invalid(message) => OAuthError::client(message),
            ClientError::Store(e) => e.into(),
        }
    }
}

impl From<actix_web::error::BlockingError> for OAuthError {
    fn from(_: actix_web::error::BlockingError) -> OAuthError {
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the worker stopped unexpectedly",
        )
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl actix_web::ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        no_store(&mut response);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"carnet\""));
        }
        response.json(json!({"error": self.code, "error_description": self.description}))
    }
}

/// A 200 JSON answer that no cache may keep.
fn no_store_json(value: &Value) -> HttpResponse {
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok);
    ok.json(value)
}

/// The `token` of an introspection or revocation form.
fn token_param(req: &HttpRequest, body: &[u8]) -> Result<String, OAuthError> {
    let form = form(req, body)?;
    Ok(param(&form, "token")
        .ok_or_else(|| OAuthError::request("token is missing"))?
        .to_string())
}

fn no_store(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
}

/// The capabilities this server implements, as SMART names them.
pub const CAPABILITIES: &[&str] = &[
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "authorize-post",
    "permission-v1",
    "permission-v2",
];

const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];
const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];

async fn smart_configuration<S: AuthContext>(state: web::Data<S>) -> HttpResponse {
    let urls = state.authority().urls();
    HttpResponse::Ok().json(json!({
        "issuer": urls.fhir_base,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": clients::ASSERTION_ALGORITHMS,
        "grant_types_supported": GRANT_TYPES,
        "scopes_supported": ["openid", "fhirUser", "launch/patient", "offline_access",
            "online_access", "patient/*.cruds", "user/*.cruds", "system/*.cruds"],
        "response_types_supported": ["code"],
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "management_endpoint": urls.manage,
        "capabilities": CAPABILITIES,
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn openid_configuration<S: AuthContext>(state: web::Data<S>) -> HttpResponse {
    let urls = state.authority().urls();
    HttpResponse::Ok().json(json!({
        "issuer": urls.fhir_base,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": clients::ASSERTION_ALGORITHMS,
    }))
}

async fn jwks<S: AuthContext>(state: web::Data<S>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"keys": [state.authority().signing_key().jwk()]}))
}

/// The form of a POST to these endpoints; a parameter given twice is refused (RFC 6749 §3.1).
fn form(req: &HttpRequest, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::request(
            "send the parameters as application/x-www-form-urlencoded",
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| OAuthError::request(format!("the form cannot be read: {e}")))?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(OAuthError::request(format!(
                "the parameter '{name}' is given more than once"
            )));
        }
    }
    Ok(pairs)
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `client_id`/`client_secret` from HTTP Basic (RFC 6749 §2.3.1), if sent.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::client("the Authorization header is not valid HTTP Basic");
    let text = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
    else {
        return Err(bad());
    };
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
            .ok_or_else(bad)
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

async fn token<S: AuthContext>(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<S>,
) -> Result<HttpResponse, OAuthError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(OAuthError::request("the form is larger than 64 KiB"));
    }
    let form = form(&req, &body)?;
    let basic = basic_credentials(req.headers())?;
    let grant_type = param(&form, "grant_type")
        .ok_or_else(|| OAuthError::request("grant_type is missing"))?
        .to_string();
    match grant_type.as_str() {
        "client_credentials" => {
            let worker = state.clone();
            let response =
                web::block(move || client_credentials(&**worker, &form, basic)).await??;
            Ok(no_store_json(&response))
        }
        "authorization_code" | "refresh_token" => {
            let worker = state.clone();
            let response = web::block(move || {
                if grant_type == "authorization_code" {
                    authorization_code(&**worker, &form, basic)
                } else {
                    refresh(&**worker, &form, basic)
                }
            })
            .await??;
            Ok(no_store_json(&response))
        }
        other => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!(
                "grant_type '{other}' is not supported; use authorization_code, refresh_token \
                 or client_credentials"
            ),
        )),
    }
}

/// The `private_key_jwt` assertion of the form, if it carries one; another assertion type is
/// refused.
fn assertion<'a>(
    form: &'a [(String, String)],
    token_url: &'a str,
) -> Result<Option<Credentials<'a>>, OAuthError> {
    match (
        param(form, "client_assertion_type"),
        param(form, "client_assertion"),
    ) {
        (Some(clients::JWT_BEARER), Some(assertion)) => Ok(Some(Credentials::Assertion {
            assertion,
            token_url,
        })),
        (Some(clients::JWT_BEARER), None) => Err(OAuthError::client("client_assertion is missing")),
        (Some(other), _) => Err(OAuthError::client(format!(
            "client_assertion_type '{other}' is not supported; use {}",
            clients::JWT_BEARER
        ))),
        (None, _) => Ok(None),
    }
}

fn invalid_grant(description: impl Into<String>) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// The client of an authorization code or refresh request: a signed assertion, a secret
/// (HTTP Basic or in the form), or a public client's id alone.
fn app_client<S: AuthContext>(
    state: &S,
    form: &[(String, String)],
    basic: Option<(String, String)>,
) -> Result<clients::Client, OAuthError> {
    let token_url = &state.authority().urls().token;
    let credentials = match assertion(form, token_url)? {
        Some(assertion) => assertion,
        None => match (
            &basic,
            param(form, "client_id"),
            param(form, "client_secret"),
        ) {
            (Some((id, secret)), _, _) => Credentials::Secret { id, secret },
            (None, Some(id), Some(secret)) => Credentials::Secret { id, secret },
            (None, Some(id), None) => Credentials::Id(id),
            (None, None, _) => return Err(OAuthError::client("client_id is missing")),
        },
    };
    let client = clients::authenticate(state.store(), &credentials)?;
    if client.kind == ClientKind::Backend {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "a backend service gets its tokens with client_credentials",
        ));
    }
    Ok(client)
}

/// How long refresh tokens live: `offline_access` until withdrawn (a long limit), else
/// `online_access` for a working day.
fn refresh_lifetime(scopes: &Scopes) -> Option<i64> {
    if scopes.has("offline_access") {
        Some(90 * 24 * 3600)
    } else if scopes.has("online_access") {
        Some(12 * 3600)
    } else {
        None
    }
}

/// The token response of a person's grant: access token, context, id_token, refresh token.
#[allow(clippy::too_many_arguments)]
fn person_tokens<S: AuthContext>(
    state: &S,
    client_id: &str,
    subject: &str,
    fhir_user: Option<&str>,
    patient: Option<&str>,
    scopes: &Scopes,
    origin: &str,
    nonce: Option<&str>,
    refresh_expires: Option<i64>,
) -> Result<Value, OAuthError> {
    let authority = state.authority();
    let issued = authority.issue(
        state.store(),
        &NewGrant {
            client_id: client_id.to_string(),
            subject: subject.to_string(),
            fhir_user: fhir_user.map(str::to_string),
            patient: patient.map(str::to_string),
            scopes: scopes.clone(),
            lifetime_seconds: super::tokens::MAX_ACCESS_TOKEN_SECONDS,
            origin: Some(origin.to_string()),
        },
    )?;
    let mut answer = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": scopes.to_string(),
    });
    if let Some(patient) = patient {
        answer["patient"] = patient.into();
    }
    if scopes.has("openid") {
        let user = fhir_user.filter(|_| scopes.has("fhirUser"));
        answer["id_token"] = authority.id_token(client_id, subject, user, nonce).into();
    }
    if let Some(expires) = refresh_expires {
        let token = super::authorize::random_token();
        state.store().record_refresh(&RefreshRow {
            token_sha256: super::authorize::sha256(&token),
            client_id: client_id.to_string(),
            subject: subject.to_string(),
            fhir_user: fhir_user.map(str::to_string),
            patient: patient.map(str::to_string),
            scope: scopes.to_string(),
            issued: now_seconds(),
            expires,
            used: None,
            revoked: None,
            family: origin.to_string(),
        })?;
        answer["refresh_token"] = token.into();
    }
    Ok(answer)
}

/// The one-time code of the authorization code flow, with its PKCE verifier.
fn authorization_code<S: AuthContext>(
    state: &S,
    form: &[(String, String)],
    basic: Option<(String, String)>,
) -> Result<Value, OAuthError> {
    let client = app_client(state, form, basic)?;
    let code = param(form, "code").ok_or_else(|| OAuthError::request("code is missing"))?;
    let Some((request, replayed)) = state.store().take_code(&super::authorize::sha256(code))?
    else {
        return Err(invalid_grant("the code is not one this server issued"));
    };
    if replayed {
        // RFC 6749 §4.1.2: a code used twice revokes what it gave.
        state.store().revoke_origin(&request.id)?;
        return Err(invalid_grant(
            "the code was used already; its tokens are revoked",
        ));
    }
    if request.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if request.expires <= now_seconds() {
        return Err(invalid_grant("the code has expired"));
    }
    if param(form, "redirect_uri") != Some(request.redirect_uri.as_str()) {
        return Err(invalid_grant(
            "redirect_uri must be the one of the authorization request",
        ));
    }
    let verifier = param(form, "code_verifier")
        .ok_or_else(|| invalid_grant("code_verifier is missing (PKCE is required)"))?;
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
    let challenge = URL_SAFE_NO_PAD.encode(super::authorize::sha256(verifier));
    if !well_formed || challenge != request.code_challenge {
        return Err(invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    let scopes = Scopes::parse(&request.scope);
    let refresh_expires = refresh_lifetime(&scopes).map(|s| now_seconds() + s);
    person_tokens(
        state,
        &client.client_id,
        request.subject.as_deref().unwrap_or_default(),
        request.fhir_user.as_deref(),
        request.patient.as_deref(),
        &scopes,
        &request.id,
        request.nonce.as_deref(),
        refresh_expires,
    )
}

/// A refresh token, rotated: the new one replaces it, within the original grant.
fn refresh<S: AuthContext>(
    state: &S,
    form: &[(String, String)],
    basic: Option<(String, String)>,
) -> Result<Value, OAuthError> {
    let client = app_client(state, form, basic)?;
    let token = param(form, "refresh_token")
        .ok_or_else(|| OAuthError::request("refresh_token is missing"))?;
    let Some((row, replayed)) = state
        .store()
        .take_refresh(&super::authorize::sha256(token))?
    else {
        return Err(invalid_grant(
            "the refresh token is not one this server issued",
        ));
    };
    if replayed {
        return Err(invalid_grant(
            "the refresh token was used or withdrawn already; every token of this grant is revoked",
        ));
    }
    if row.client_id != client.client_id {
        state.store().revoke_family(&row.family)?;
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if row.expires <= now_seconds() {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let original = Scopes::parse(&row.scope);
    let scopes = match param(form, "scope") {
        // Never wider than the original grant.
        Some(asked) => Scopes::parse(asked).within(&original),
        None => original,
    };
    person_tokens(
        state,
        &client.client_id,
        &row.subject,
        row.fhir_user.as_deref(),
        row.patient.as_deref(),
        &scopes,
        &row.family,
        None,
        Some(row.expires),
    )
}

/// SMART Backend Services: a `private_key_jwt` assertion for `system/` scopes.
fn client_credentials<S: AuthContext>(
    state: &S,
    form: &[(String, String)],
    basic: Option<(String, String)>,
) -> Result<Value, OAuthError> {
    let token_url = &state.authority().urls().token;
    let credentials = match (assertion(form, token_url)?, &basic) {
        (Some(assertion), _) => assertion,
        (None, Some((id, secret))) => Credentials::Secret { id, secret },
        (None, None) => {
            return Err(OAuthError::client(
                "client_credentials needs a client_assertion (private_key_jwt)",
            ))
        }
    };
    let client = clients::authenticate(state.store(), &credentials)?;
    if client.kind != ClientKind::Backend {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!(
                "client '{}' is registered as {}, not as a backend service",
                client.client_id,
                client.kind.as_str()
            ),
        ));
    }
    let asked = param(form, "scope").ok_or_else(|| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope is missing (for instance system/*.rs)",
        )
    })?;
    let mut granted = Scopes::parse(asked).within(&client.scopes);
    granted.resources.retain(|e| e.level == Level::System);
    granted.others.clear();
    if granted.resources.is_empty() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "none of '{asked}' is a system/ scope that client '{}' may have ({})",
                client.client_id, client.scopes
            ),
        ));
    }
    let issued = state.authority().issue(
        state.store(),
        &NewGrant {
            client_id: client.client_id.clone(),
            subject: client.client_id.clone(),
            fhir_user: None,
            patient: None,
            scopes: granted.clone(),
            lifetime_seconds: MAX_SYSTEM_TOKEN_SECONDS,
            origin: None,
        },
    )?;
    Ok(json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": granted.to_string(),
    }))
}

/// RFC 7662. Knowing a token is what lets one ask about it, so no client authentication is
/// required; anything not recognised is simply `{"active": false}`.
async fn introspect<S: AuthContext>(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<S>,
) -> Result<HttpResponse, OAuthError> {
    let token = token_param(&req, &body)?;
    let worker = state.clone();
    let answer = web::block(move || {
        let authority = worker.authority();
        match authority.verify(worker.store(), &token) {
            Ok(caller) => {
                let grant = worker.store().grant(&caller.token_id)?;
                let mut answer = json!({
                    "active": true,
                    "scope": caller.scopes.to_string(),
                    "client_id": caller.client_id,
                    "sub": caller.subject,
                    "iss": authority.issuer(),
                    "aud": authority.issuer(),
                    "token_type": "Bearer",
                    "jti": caller.token_id,
                });
                if let Some(grant) = grant {
                    answer["exp"] = grant.expires.into();
                    answer["iat"] = grant.issued.into();
                }
                if let Some(patient) = &caller.patient {
                    answer["patient"] = patient.as_str().into();
                }
                if let Some(user) = &caller.fhir_user {
                    answer["fhirUser"] = user.as_str().into();
                }
                Ok(answer)
            }
            Err(TokenError::Invalid(_)) => Ok(json!({"active": false})),
            Err(TokenError::Store(e)) => Err(e),
        }
    })
    .await??;
    Ok(no_store_json(&answer))
}

/// RFC 7009: the token stops working on every node at the next request. Answers 200 whether or
/// not the token was known, as the RFC says.
async fn revoke<S: AuthContext>(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<S>,
) -> Result<HttpResponse, OAuthError> {
    let token = token_param(&req, &body)?;
    let worker = state.clone();
    // An access token of this server, or else perhaps a refresh token.
    web::block(move || match worker.authority().token_id(&token) {
        Some(jti) => worker.store().revoke_grant(&jti, None).map(|_| ()),
        None => worker
            .store()
            .revoke_refresh(&super::authorize::sha256(&token)),
    })
    .await??;
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok);
    Ok(ok.finish())
}
