//! The SMART authorization code flow, as a person lives it: the app sends them to
//! `/auth/authorize`; they choose how to sign in (an upstream provider), sign in there, come
//! back to `/auth/callback`, choose the patient when the app needs one, and allow or deny the
//! app; the app then gets a one-time code for `/auth/token`. Each step is bound to the browser
//! that started it (a cookie holding the request id), so a link cannot be replayed elsewhere.
//! `/auth/manage` lets a person see and withdraw the apps they authorised.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

use super::clients::Client;
use super::identity;
use super::pages::{describe_scope, escape, page, problem};
use super::AuthContext;
use crate::access::{Level, Scopes};
use crate::store::auth::{now_seconds, AuthRequestRow};
use crate::store::StoreError;

/// The cookie binding a flow to its browser.
const FLOW_COOKIE: &str = "carnet_flow";
/// The cookie of a person managing their apps.
const SESSION_COOKIE: &str = "carnet_session";
/// How long a person has to sign in and decide.
const REQUEST_SECONDS: i64 = 600;
/// How long a management session lasts.
const SESSION_SECONDS: i64 = 900;
/// The pseudo-client of management sessions.
const MANAGE: &str = "carnet-manage";
/// The identifier system of the INS, by which a professional picks a patient.
pub const INS_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";

pub fn configure<S: AuthContext>(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/authorize", web::get().to(authorize_get::<S>))
        .route("/auth/authorize", web::post().to(authorize_post::<S>))
        .route("/auth/login/{provider}", web::get().to(login::<S>))
        .route("/auth/callback", web::get().to(callback::<S>))
        .route("/auth/patient", web::get().to(patient_page::<S>))
        .route("/auth/patient", web::post().to(patient_chosen::<S>))
        .route("/auth/consent", web::get().to(consent_page::<S>))
        .route("/auth/consent", web::post().to(consent_given::<S>))
        .route("/auth/manage", web::get().to(manage::<S>))
        .route("/auth/manage/revoke", web::post().to(manage_revoke::<S>));
}

pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system has randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(text: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .to_vec()
}

/// A request of `client_id` that nobody has signed in to yet.
fn new_request(client_id: &str, redirect_uri: &str) -> AuthRequestRow {
    AuthRequestRow {
        id: random_token(),
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scope: String::new(),
        state: None,
        nonce: None,
        code_challenge: String::new(),
        provider: None,
        upstream_verifier: None,
        upstream_nonce: None,
        subject: None,
        fhir_user: None,
        patient: None,
        code_sha256: None,
        code_used: None,
        expires: now_seconds() + REQUEST_SECONDS,
    }
}

fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    log::error!("authorization flow: {e}");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "The authorization server cannot reach its database right now.",
    )
}

/// A `Set-Cookie` value: only this server's `/auth` pages see it, never scripts, and other
/// sites' pages do not send it (`SameSite=Lax` still lets the upstream provider's redirect
/// back carry it).
fn flow_cookie(name: &str, value: &str, seconds: i64) -> String {
    format!("{name}={value}; Path=/auth; Max-Age={seconds}; HttpOnly; SameSite=Lax")
}

/// The value of cookie `name` in `req`.
fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Redirects the browser back to the app with `params` (the OAuth answer).
fn back_to_app(request: &AuthRequestRow, params: &[(&str, &str)], issuer: &str) -> HttpResponse {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    if let Some(state) = &request.state {
        pairs.push(("state", state));
    }
    pairs.push(("iss", issuer));
    let separator = if request.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    HttpResponse::SeeOther()
        .insert_header((
            header::LOCATION,
            format!("{}{separator}{query}", request.redirect_uri),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

async fn authorize_get<S: AuthContext>(req: HttpRequest, state: web::Data<S>) -> HttpResponse {
    match serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string()) {
        Ok(params) => authorize(state, params).await,
        Err(e) => problem(StatusCode::BAD_REQUEST, "Invalid request", &e.to_string()),
    }
}

async fn authorize_post<S: AuthContext>(body: web::Bytes, state: web::Data<S>) -> HttpResponse {
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(params) => authorize(state, params).await,
        Err(e) => problem(StatusCode::BAD_REQUEST, "Invalid request", &e.to_string()),
    }
}

/// Checks the app's request; an unknown client or redirect URI is answered here (never
/// redirected), anything else wrong goes back to the app as an OAuth error.
async fn authorize<S: AuthContext>(
    state: web::Data<S>,
    params: Vec<(String, String)>,
) -> HttpResponse {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let Some(client_id) = get("client_id") else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "client_id is missing.",
        );
    };
    let worker = state.clone();
    let id = client_id.clone();
    let client = match web::block(move || worker.store().client(&id)).await {
        Ok(Ok(Some(row))) => row,
        Ok(Ok(None)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                &format!("No application '{client_id}' is registered with this server."),
            )
        }
        Ok(Err(e)) => return unavailable(e),
        Err(e) => return unavailable(e),
    };
    let client = match Client::from_stored(&client) {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let Some(redirect_uri) = get("redirect_uri").filter(|r| client.redirect_uris.contains(r))
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The redirect_uri is missing or is not one this application registered.",
        );
    };
    let mut request = new_request(&client.client_id, &redirect_uri);
    request.state = get("state");
    request.nonce = get("nonce");
    let issuer = state.authority().issuer().to_string();
    let refuse = |request: &AuthRequestRow, error: &str, description: &str| {
        back_to_app(
            request,
            &[("error", error), ("error_description", description)],
            &issuer,
        )
    };
    if get("response_type").as_deref() != Some("code") {
        return refuse(
            &request,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    match (
        get("code_challenge"),
        get("code_challenge_method").as_deref(),
    ) {
        (Some(challenge), Some("S256")) if challenge.len() >= 43 => {
            request.code_challenge = challenge
        }
        _ => {
            return refuse(
                &request,
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256",
            )
        }
    }
    if get("aud").as_deref().map(|a| a.trim_end_matches('/')) != Some(issuer.as_str()) {
        return refuse(
            &request,
            "invalid_request",
            &format!("aud must be this FHIR server's base URL, {issuer}"),
        );
    }
    let asked = Scopes::parse(&get("scope").unwrap_or_default());
    let granted = asked.within(&client.scopes);
    if granted.resources.is_empty() && !granted.has("openid") {
        return refuse(
            &request,
            "invalid_scope",
            "none of the scopes asked for is one this application may have",
        );
    }
    request.scope = granted.to_string();
    let providers = state.providers().all();
    let worker = state.clone();
    let row = request.clone();
    if let Err(e) = web::block(move || worker.store().save_auth_request(&row)).await {
        return unavailable(e);
    }
    sign_in_page(&request, &client.name, providers)
}

fn sign_in_page(
    request: &AuthRequestRow,
    app: &str,
    providers: &[crate::config::IdentityProvider],
) -> HttpResponse {
    let mut body = if request.client_id == MANAGE {
        "<p>Sign in to see the applications you authorised.</p>".to_string()
    } else {
        format!(
            "<p><strong>{}</strong> asks to reach your health record. Sign in first.</p>",
            escape(app)
        )
    };
    if providers.is_empty() {
        body.push_str(
            "<p class=\"error\">No identity provider is configured on this server: its \
             operator must add one (identity_provider in the configuration file).</p>",
        );
    }
    for p in providers {
        body.push_str(&format!(
            "<p><a class=\"button\" id=\"signin-{}\" href=\"/auth/login/{}?request={}\">Sign in with {}</a></p>",
            escape(&p.id),
            escape(&p.id),
            escape(&request.id),
            escape(&p.name)
        ));
    }
    let mut response = page(StatusCode::OK, "Sign in", &body);
    if let Ok(value) =
        header::HeaderValue::from_str(&flow_cookie(FLOW_COOKIE, &request.id, REQUEST_SECONDS))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The request named by `id` if this browser started it.
async fn bound_request<S: AuthContext>(
    req: &HttpRequest,
    state: &web::Data<S>,
    id: &str,
) -> Result<AuthRequestRow, HttpResponse> {
    if cookie(req, FLOW_COOKIE).as_deref() != Some(id) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Start again",
            "This sign-in was not started in this browser, or it has expired. Go back to the \
             application and start again.",
        ));
    }
    let worker = state.clone();
    let id = id.to_string();
    match web::block(move || worker.store().auth_request(&id)).await {
        Ok(Ok(Some(row))) => Ok(row),
        Ok(Ok(None)) => Err(problem(
            StatusCode::BAD_REQUEST,
            "Start again",
            "This sign-in has expired. Go back to the application and start again.",
        )),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(e)),
    }
}

/// The request named by `id` if this browser started it and someone signed in to it.
async fn signed_in<S: AuthContext>(
    req: &HttpRequest,
    state: &web::Data<S>,
    id: &str,
) -> Result<AuthRequestRow, HttpResponse> {
    match bound_request(req, state, id).await {
        Ok(request) if request.fhir_user.is_some() => Ok(request),
        Ok(_) => Err(problem(
            StatusCode::BAD_REQUEST,
            "Start again",
            "Sign in first.",
        )),
        Err(page) => Err(page),
    }
}

async fn save<S: AuthContext>(
    state: &web::Data<S>,
    row: AuthRequestRow,
) -> Result<(), HttpResponse> {
    let worker = state.clone();
    match web::block(move || worker.store().save_auth_request(&row)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(e)),
    }
}

#[derive(serde::Deserialize)]
struct RequestId {
    request: String,
}

async fn login<S: AuthContext>(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<RequestId>,
    state: web::Data<S>,
) -> HttpResponse {
    let mut request = match bound_request(&req, &state, &query.request).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let Some(provider) = state.providers().get(&path).cloned() else {
        return problem(
            StatusCode::NOT_FOUND,
            "Unknown sign-in",
            "This server has no such identity provider.",
        );
    };
    let worker = state.clone();
    let id = request.id.clone();
    let chosen = provider.clone();
    let started = web::block(move || worker.providers().start(&chosen, &id)).await;
    let redirect = match started {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return problem(StatusCode::BAD_GATEWAY, "Sign-in unavailable", &e.0),
        Err(e) => return unavailable(e),
    };
    request.provider = Some(provider.id);
    request.upstream_verifier = Some(redirect.verifier);
    request.upstream_nonce = Some(redirect.nonce);
    if let Err(page) = save(&state, request).await {
        return page;
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, redirect.url))
        .finish()
}

#[derive(serde::Deserialize)]
struct Callback {
    state: String,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback<S: AuthContext>(
    req: HttpRequest,
    query: web::Query<Callback>,
    state: web::Data<S>,
) -> HttpResponse {
    let mut request = match bound_request(&req, &state, &query.state).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let issuer = state.authority().issuer().to_string();
    let (Some(code), Some(provider_id)) = (query.code.clone(), request.provider.clone()) else {
        let why = query
            .error_description
            .clone()
            .or(query.error.clone())
            .unwrap_or_else(|| "the sign-in did not complete".into());
        if request.client_id == MANAGE {
            return problem(StatusCode::UNAUTHORIZED, "Not signed in", &why);
        }
        return back_to_app(
            &request,
            &[("error", "access_denied"), ("error_description", &why)],
            &issuer,
        );
    };
    let Some(provider) = state.providers().get(&provider_id).cloned() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Start again",
            "The identity provider is gone.",
        );
    };
    let worker = state.clone();
    let verifier = request.upstream_verifier.clone().unwrap_or_default();
    let nonce = request.upstream_nonce.clone().unwrap_or_default();
    let signed_in = web::block(move || {
        let claims = worker
            .providers()
            .finish(&provider, &code, &verifier, &nonce)
            .map_err(|e| e.0)?;
        identity::resolve(worker.services(), &provider, &claims).map_err(|e| e.0)
    })
    .await;
    let person = match signed_in {
        Ok(Ok(person)) => person,
        Ok(Err(message)) => {
            return problem(StatusCode::FORBIDDEN, "You cannot sign in here", &message)
        }
        Err(e) => return unavailable(e),
    };
    // Apps see the FHIR identity as the subject, never the national identifier.
    request.subject = Some(person.fhir_user.clone());
    request.fhir_user = Some(person.fhir_user.clone());
    // One-time use of the upstream secrets.
    request.upstream_verifier = None;
    request.upstream_nonce = None;
    if request.client_id == MANAGE {
        request.expires = now_seconds() + SESSION_SECONDS;
        let session = request.id.clone();
        if let Err(page) = save(&state, request).await {
            return page;
        }
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/auth/manage"))
            .insert_header((
                header::SET_COOKIE,
                flow_cookie(SESSION_COOKIE, &session, SESSION_SECONDS),
            ))
            .finish();
    }
    let needs_patient = {
        let scopes = Scopes::parse(&request.scope);
        scopes.has("launch/patient") || scopes.has_level(Level::Patient)
    };
    let next = if needs_patient {
        match person.fhir_user.strip_prefix("Patient/") {
            // A patient works on their own record.
            Some(own) => {
                request.patient = Some(own.to_string());
                "consent"
            }
            None => "patient",
        }
    } else {
        "consent"
    };
    let id = request.id.clone();
    if let Err(page) = save(&state, request).await {
        return page;
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/auth/{next}?request={id}")))
        .finish()
}

fn patient_form(request: &AuthRequestRow, error: Option<&str>) -> HttpResponse {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"problem\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Choose the patient",
        &format!(
            "{error}<p>The application works on one patient's record. Give the patient's INS \
             (national health identifier).</p>\
             <form method=\"post\" action=\"/auth/patient\">\
             <input type=\"hidden\" name=\"request\" value=\"{}\">\
             <label for=\"ins\">INS</label> <input id=\"ins\" name=\"ins\" autocomplete=\"off\" required>\
             <p><button type=\"submit\" id=\"choose\">Continue</button></p></form>",
            escape(&request.id)
        ),
    )
}

async fn patient_page<S: AuthContext>(
    req: HttpRequest,
    query: web::Query<RequestId>,
    state: web::Data<S>,
) -> HttpResponse {
    match bound_request(&req, &state, &query.request).await {
        Ok(request) if request.fhir_user.is_some() => patient_form(&request, None),
        Ok(_) => problem(StatusCode::BAD_REQUEST, "Start again", "Sign in first."),
        Err(page) => page,
    }
}

#[derive(serde::Deserialize)]
struct PatientChoice {
    request: String,
    ins: String,
}

async fn patient_chosen<S: AuthContext>(
    req: HttpRequest,
    form: web::Form<PatientChoice>,
    state: web::Data<S>,
) -> HttpResponse {
    let mut request = match signed_in(&req, &state, &form.request).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let ins = form.ins.trim().to_string();
    let worker = state.clone();
    let lookup = ins.clone();
    let found = web::block(move || {
        identity::find_by_identifier(worker.services(), "Patient", INS_SYSTEM, &lookup)
    })
    .await;
    match found {
        Ok(Ok(Some(patient))) => {
            request.patient = Some(patient);
            let id = request.id.clone();
            if let Err(page) = save(&state, request).await {
                return page;
            }
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/auth/consent?request={id}")))
                .finish()
        }
        Ok(Ok(None)) => patient_form(&request, Some(&format!("No patient has the INS {ins}."))),
        Ok(Err(e)) => patient_form(&request, Some(&e.0)),
        Err(e) => unavailable(e),
    }
}

async fn consent_page<S: AuthContext>(
    req: HttpRequest,
    query: web::Query<RequestId>,
    state: web::Data<S>,
) -> HttpResponse {
    let request = match bound_request(&req, &state, &query.request).await {
        Ok(r) if r.fhir_user.is_some() => r,
        Ok(_) => return problem(StatusCode::BAD_REQUEST, "Start again", "Sign in first."),
        Err(page) => return page,
    };
    let worker = state.clone();
    let client_id = request.client_id.clone();
    let app = match web::block(move || worker.store().client(&client_id)).await {
        Ok(Ok(Some(row))) => row.name,
        Ok(Ok(None)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "The application was removed.",
            )
        }
        Ok(Err(e)) => return unavailable(e),
        Err(e) => return unavailable(e),
    };
    let items: String = request
        .scope
        .split_ascii_whitespace()
        .map(|s| {
            format!(
                "<li>{} <code>{}</code></li>",
                escape(&describe_scope(s)),
                escape(s)
            )
        })
        .collect();
    let patient = request
        .patient
        .as_deref()
        .map(|p| {
            format!(
                "<p>Patient: <code id=\"patient\">Patient/{}</code></p>",
                escape(p)
            )
        })
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Allow this application?",
        &format!(
            "<p>Signed in as <code id=\"user\">{}</code>.</p>{patient}\
             <p><strong>{}</strong> asks to:</p><ul>{items}</ul>\
             <form method=\"post\" action=\"/auth/consent\">\
             <input type=\"hidden\" name=\"request\" value=\"{}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\" class=\"secondary\">Deny</button>\
             </form>",
            escape(request.fhir_user.as_deref().unwrap_or("")),
            escape(&app),
            escape(&request.id)
        ),
    )
}

#[derive(serde::Deserialize)]
struct Decision {
    request: String,
    decision: String,
}

async fn consent_given<S: AuthContext>(
    req: HttpRequest,
    form: web::Form<Decision>,
    state: web::Data<S>,
) -> HttpResponse {
    // Decided once: a request that already has its code is not decided again.
    let mut request = match signed_in(&req, &state, &form.request).await {
        Ok(r) if r.code_sha256.is_none() => r,
        Ok(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Start again",
                "This request was decided already.",
            )
        }
        Err(page) => return page,
    };
    let issuer = state.authority().issuer().to_string();
    if form.decision != "allow" {
        return back_to_app(
            &request,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied access"),
            ],
            &issuer,
        );
    }
    let code = random_token();
    request.code_sha256 = Some(sha256(&code));
    let answer = request.clone();
    if let Err(page) = save(&state, request).await {
        return page;
    }
    back_to_app(&answer, &[("code", &code)], &issuer)
}

/// The management session of `req`, if signed in.
async fn session<S: AuthContext>(
    req: &HttpRequest,
    state: &web::Data<S>,
) -> Option<AuthRequestRow> {
    let id = cookie(req, SESSION_COOKIE)?;
    let worker = state.clone();
    match web::block(move || worker.store().auth_request(&id)).await {
        Ok(Ok(Some(row))) if row.client_id == MANAGE && row.subject.is_some() => Some(row),
        _ => None,
    }
}

async fn manage<S: AuthContext>(req: HttpRequest, state: web::Data<S>) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        let request = new_request(MANAGE, "/auth/manage");
        let row = request.clone();
        let worker = state.clone();
        if let Err(e) = web::block(move || worker.store().save_auth_request(&row)).await {
            return unavailable(e);
        }
        return sign_in_page(&request, "", state.providers().all());
    };
    let subject = session.subject.clone().unwrap_or_default();
    let worker = state.clone();
    let apps: Result<Vec<(String, String, i64)>, StoreError> =
        match web::block(move || worker.store().authorised_apps(&subject)).await {
            Ok(r) => r,
            Err(e) => return unavailable(e),
        };
    let apps = match apps {
        Ok(apps) => apps,
        Err(e) => return unavailable(e),
    };
    let mut seen = Vec::new();
    let mut rows = String::new();
    for (client_id, scope, issued) in apps {
        if seen.contains(&client_id) {
            continue;
        }
        let since = chrono::DateTime::from_timestamp(issued, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        rows.push_str(&format!(
            "<li><strong>{}</strong> since {since}: <code>{}</code>\
             <form method=\"post\" action=\"/auth/manage/revoke\">\
             <input type=\"hidden\" name=\"client_id\" value=\"{}\">\
             <button type=\"submit\" class=\"secondary\" id=\"revoke-{}\">Withdraw access</button></form></li>",
            escape(&client_id),
            escape(&scope),
            escape(&client_id),
            escape(&client_id)
        ));
        seen.push(client_id);
    }
    let list = if rows.is_empty() {
        "<p id=\"none\">No application has access on your behalf.</p>".to_string()
    } else {
        format!("<ul id=\"apps\">{rows}</ul>")
    };
    page(
        StatusCode::OK,
        "Your applications",
        &format!(
            "<p>Signed in as <code>{}</code>.</p>{list}",
            escape(session.fhir_user.as_deref().unwrap_or(""))
        ),
    )
}

#[derive(serde::Deserialize)]
struct Withdraw {
    client_id: String,
}

async fn manage_revoke<S: AuthContext>(
    req: HttpRequest,
    form: web::Form<Withdraw>,
    state: web::Data<S>,
) -> HttpResponse {
    let Some(session) = session(&req, &state).await else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Sign in again at /auth/manage.",
        );
    };
    let subject = session.subject.unwrap_or_default();
    let client_id = form.client_id.clone();
    let worker = state.clone();
    match web::block(move || worker.store().revoke_app(&subject, &client_id)).await {
        Ok(Ok(())) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/auth/manage"))
            .finish(),
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}
