//! The pages a person sees while authorising an app: plain HTML, every value escaped, no
//! script. They work in any browser and with a screen reader.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;\
padding:0 1rem;line-height:1.5;color:#1b1b1b}h1{font-size:1.4rem}\
.button,button{display:inline-block;margin:.3rem .5rem .3rem 0;padding:.6rem 1.2rem;\
border-radius:.4rem;border:1px solid #1f4e8c;background:#1f4e8c;color:#fff;\
text-decoration:none;font-size:1rem;cursor:pointer}\
button.secondary{background:#fff;color:#1f4e8c}.error{color:#a4161a}\
input{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}\
li{margin:.2rem 0}code{font-size:.9rem}";

/// A whole page; `body` is HTML the caller built with [`escape`]d values.
pub fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' *; frame-ancestors 'none'",
        ))
        .body(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{} · Carnet</title><style>{STYLE}</style></head><body><h1>{}</h1>{body}\
             </body></html>",
            escape(title),
            escape(title)
        ))
}

/// A page that explains why the flow stops here, and what to do.
pub fn problem(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(
        status,
        title,
        &format!("<p class=\"error\" id=\"problem\">{}</p>", escape(message)),
    )
}

/// What a scope lets an app do, in words.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" | "fhirUser" | "profile" => return "know who you are".into(),
        "launch/patient" => return "work on one patient's record".into(),
        "offline_access" => return "keep access after you leave, until you withdraw it".into(),
        "online_access" => return "keep access while you are signed in".into(),
        _ => {}
    }
    let Some((level, rest)) = scope.split_once('/') else {
        return scope.into();
    };
    let (ty, letters) = rest.split_once('.').unwrap_or((rest, ""));
    let letters = letters.split('?').next().unwrap_or("");
    let mut verbs = Vec::new();
    for (c, verb) in [
        ('c', "create"),
        ('r', "read"),
        ('u', "update"),
        ('d', "delete"),
        ('s', "search"),
    ] {
        if letters.contains(c) {
            verbs.push(verb);
        }
    }
    let what = if ty == "*" {
        "all data".to_string()
    } else {
        ty.to_string()
    };
    let whose = match level {
        "patient" => "of the patient in context",
        "user" => "you may see",
        _ => "of everyone",
    };
    format!("{} {what} {whose}", verbs.join(", "))
}
