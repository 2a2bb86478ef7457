//! Interoperability check: drive a real `carnet` server with the third-party `fhir-sdk` client.
//!
//! For each backend (a temporary SQLite file, a fresh PostgreSQL database) this starts the carnet
//! binary on `127.0.0.1:0`, then uses nothing but fhir-sdk's R4B models and its HTTP client to
//! create, read, update, version-read, patch, delete and page through history. One line is printed
//! per check, then a closing `N passed, M failed` line; the exit status is non-zero on any
//! failure. The server is killed and the PostgreSQL database dropped on every path out.
//!
//! Environment:
//! - `CARNET_BIN`: the server binary (default `<repo>/target/debug/carnet`).
//! - `CARNET_BACKENDS`: comma-separated subset of `sqlite,postgres` (default both).
//! - `CARNET_PG_BASE`: PostgreSQL server URL without a database (default
//!   `postgres://postgres@127.0.0.1:5432`); `psql` must be on the PATH.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fhir_sdk::client::{Client, Error as ClientError, ResourceWrite};
use fhir_sdk::r4b::codes::{
    AdministrativeGender, BundleType, FHIRVersion, HTTPVerb, IdentifierUse, NameUse,
    ObservationStatus,
};
use fhir_sdk::r4b::resources::{
    Bundle, Observation, ObservationValue, Patient, Resource, ResourceType,
};
use fhir_sdk::r4b::types::{CodeableConcept, Coding, HumanName, Identifier, Quantity, Reference};
use fhir_sdk::version::FhirR4B;
use fhir_sdk::{header, Date, StatusCode};

/// OID of the French national health identifier (INS-NIR).
const INS_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";
const INS_VALUE: &str = "280057512345671";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
/// What fhir-sdk puts in Accept and Content-Type for R4B.
const R4B_MIME: &str = fhir_sdk::r4b::JSON_MIME_TYPE;

type R4bClient = Client<FhirR4B>;

// ---------------------------------------------------------------------------------------------
// Reporting

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

struct Ctx<'a> {
    tally: &'a mut Tally,
    backend: &'static str,
}

impl Ctx<'_> {
    fn pass(&mut self, name: &str, detail: &str) {
        self.tally.passed += 1;
        println!("PASS [{}] {name}: {detail}", self.backend);
    }

    fn fail(&mut self, name: &str, detail: &str) {
        self.tally.failed += 1;
        println!("FAIL [{}] {name}: {detail}", self.backend);
    }

    /// Records a check; returns the value on success.
    fn check<T>(&mut self, name: &str, result: Result<(T, String), String>) -> Option<T> {
        match result {
            Ok((value, detail)) => {
                self.pass(name, &detail);
                Some(value)
            }
            Err(detail) => {
                self.fail(name, &detail);
                None
            }
        }
    }
}

/// Runs a check that later steps depend on: on failure the scenario stops.
macro_rules! step {
    ($ctx:expr, $name:expr, $body:expr) => {
        match $ctx.check($name, $body) {
            Some(value) => value,
            None => {
                println!(
                    "     [{}] stopping this backend's scenario after that failure",
                    $ctx.backend
                );
                return;
            }
        }
    };
}

/// Collects field mismatches; `Ok` if there were none.
#[derive(Default)]
struct Diff(Vec<String>);

impl Diff {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.0
                .push(format!("{what}: got {got:?}, expected {want:?}"));
        }
    }

    fn finish(self, ok: String) -> Result<((), String), String> {
        if self.0.is_empty() {
            Ok(((), ok))
        } else {
            Err(self.0.join("; "))
        }
    }
}

/// Describes a client error; OperationOutcomes are shown as the JSON the server sent.
fn describe(err: &ClientError) -> String {
    match err {
        ClientError::OperationOutcomeR4B(status, outcome) => format!(
            "HTTP {status} with OperationOutcome {}",
            serde_json::to_string(outcome).unwrap_or_default()
        ),
        other => {
            // reqwest hides the cause (connection refused, timeout...) in the source chain. The
            // client's own message already shows its direct source, so start one level down.
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other).and_then(|s| s.source());
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test data

fn birth_date() -> Date {
    "1980-05-17".parse().expect("Date")
}

fn new_patient() -> Patient {
    Patient::builder()
        .identifier(vec![Some(
            Identifier::builder()
                .r#use(IdentifierUse::Official)
                .system(INS_SYSTEM.to_owned())
                .value(INS_VALUE.to_owned())
                .build()
                .expect("Identifier"),
        )])
        .name(vec![Some(
            HumanName::builder()
                .r#use(NameUse::Official)
                .family("Martin".to_owned())
                .given(vec![Some("Jeanne".to_owned()), Some("Marie".to_owned())])
                .build()
                .expect("HumanName"),
        )])
        .birth_date(birth_date())
        .build()
        .expect("Patient")
}

fn body_weight(patient_id: &str) -> Observation {
    Observation::builder()
        .status(ObservationStatus::Final)
        .code(
            CodeableConcept::builder()
                .coding(vec![Some(
                    Coding::builder()
                        .system(LOINC.to_owned())
                        .code("29463-7".to_owned())
                        .display("Body weight".to_owned())
                        .build()
                        .expect("Coding"),
                )])
                .build()
                .expect("CodeableConcept"),
        )
        .subject(
            Reference::builder()
                .reference(format!("Patient/{patient_id}"))
                .build()
                .expect("Reference"),
        )
        .value(ObservationValue::Quantity(
            Quantity::builder()
                .value(72.5)
                .unit("kg".to_owned())
                .system(UCUM.to_owned())
                .code("kg".to_owned())
                .build()
                .expect("Quantity"),
        ))
        .build()
        .expect("Observation")
}

fn version_of_patient(p: &Patient) -> Option<&str> {
    p.meta.as_ref().and_then(|m| m.version_id.as_deref())
}

fn version_of_observation(o: &Observation) -> Option<&str> {
    o.meta.as_ref().and_then(|m| m.version_id.as_deref())
}

fn check_patient_v1_fields(diff: &mut Diff, p: &Patient) {
    let ident = p.identifier.first().and_then(Option::as_ref);
    diff.eq("identifier count", p.identifier.len(), 1);
    diff.eq(
        "identifier.system",
        ident.and_then(|i| i.system.as_deref()),
        Some(INS_SYSTEM),
    );
    diff.eq(
        "identifier.value",
        ident.and_then(|i| i.value.as_deref()),
        Some(INS_VALUE),
    );
    diff.eq(
        "identifier.use",
        ident.and_then(|i| i.r#use),
        Some(IdentifierUse::Official),
    );
    let name = p.name.first().and_then(Option::as_ref);
    diff.eq(
        "name.family",
        name.and_then(|n| n.family.as_deref()),
        Some("Martin"),
    );
    diff.eq(
        "name.given",
        name.map(|n| {
            n.given
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
        }),
        Some(vec!["Jeanne", "Marie"]),
    );
    diff.eq("birthDate", p.birth_date.as_ref(), Some(&birth_date()));
}

// ---------------------------------------------------------------------------------------------
// The scenario, through the fhir-sdk client only

async fn scenario(ctx: &mut Ctx<'_>, client: &R4bClient, base: &str) {
    // Capabilities: fhir-sdk must be able to parse the server's CapabilityStatement.
    ctx.check(
        "GET /metadata parses as an R4B CapabilityStatement",
        match client.capabilities().await {
            Ok(cs) => {
                let types: Vec<String> = cs
                    .rest
                    .iter()
                    .flatten()
                    .flat_map(|rest| rest.resource.iter().flatten())
                    .map(|r| r.r#type.to_string())
                    .collect();
                let mut diff = Diff::default();
                diff.eq("fhirVersion", cs.fhir_version, FHIRVersion::N401);
                diff.eq(
                    "declares Patient",
                    types.iter().any(|t| t == "Patient"),
                    true,
                );
                diff.eq(
                    "declares Observation",
                    types.iter().any(|t| t == "Observation"),
                    true,
                );
                diff.finish(format!("fhirVersion 4.0.1, {} resource types", types.len()))
            }
            Err(e) => Err(describe(&e)),
        },
    );

    // Create the Patient: the client takes the id and version from Location / ETag.
    let mut patient = new_patient();
    let patient_id = step!(
        ctx,
        "create Patient (POST)",
        match patient.create(client).await {
            Ok(id) => match version_of_patient(&patient) {
                Some("1") => {
                    let detail = format!("Patient/{id}, version 1 from Location");
                    Ok((id, detail))
                }
                other => Err(format!(
                    "created Patient/{id} but version is {other:?}, expected 1"
                )),
            },
            Err(e) => Err(describe(&e)),
        }
    );
    let patient_v1 = patient.clone();

    // Create the Observation referencing it.
    let mut observation = body_weight(&patient_id);
    let observation_id = step!(
        ctx,
        "create Observation (POST)",
        match observation.create(client).await {
            Ok(id) => {
                let detail = format!("Observation/{id}, subject Patient/{patient_id}");
                Ok((id, detail))
            }
            Err(e) => Err(describe(&e)),
        }
    );

    // Read the Patient back.
    ctx.check(
        "read Patient",
        match client.read::<Patient>(&patient_id).await {
            Ok(Some(p)) => {
                let mut diff = Diff::default();
                diff.eq("id", p.id.as_deref(), Some(patient_id.as_str()));
                diff.eq("meta.versionId", version_of_patient(&p), Some("1"));
                diff.eq(
                    "meta.lastUpdated present",
                    p.meta.as_ref().is_some_and(|m| m.last_updated.is_some()),
                    true,
                );
                check_patient_v1_fields(&mut diff, &p);
                diff.finish("INS identifier, name, birthDate and versionId 1 intact".into())
            }
            Ok(None) => Err("read returned not found".into()),
            Err(e) => Err(describe(&e)),
        },
    );

    // Read the Observation back.
    ctx.check(
        "read Observation",
        match client.read::<Observation>(&observation_id).await {
            Ok(Some(o)) => {
                let mut diff = Diff::default();
                diff.eq("id", o.id.as_deref(), Some(observation_id.as_str()));
                diff.eq("meta.versionId", version_of_observation(&o), Some("1"));
                diff.eq("status", o.status, ObservationStatus::Final);
                let coding = o.code.coding.first().and_then(Option::as_ref);
                diff.eq(
                    "code.system",
                    coding.and_then(|c| c.system.as_deref()),
                    Some(LOINC),
                );
                diff.eq(
                    "code.code",
                    coding.and_then(|c| c.code.as_deref()),
                    Some("29463-7"),
                );
                let expected_ref = format!("Patient/{patient_id}");
                diff.eq(
                    "subject.reference",
                    o.subject.as_ref().and_then(|r| r.reference.as_deref()),
                    Some(expected_ref.as_str()),
                );
                match &o.value {
                    Some(ObservationValue::Quantity(q)) => {
                        diff.eq("valueQuantity.value", q.value, Some(72.5));
                        diff.eq("valueQuantity.unit", q.unit.as_deref(), Some("kg"));
                        diff.eq("valueQuantity.system", q.system.as_deref(), Some(UCUM));
                        diff.eq("valueQuantity.code", q.code.as_deref(), Some("kg"));
                    }
                    other => diff
                        .0
                        .push(format!("value: got {other:?}, expected valueQuantity")),
                }
                diff.finish("LOINC 29463-7, 72.5 kg (UCUM), subject and versionId 1 intact".into())
            }
            Ok(None) => Err("read returned not found".into()),
            Err(e) => Err(describe(&e)),
        },
    );

    // Update the Patient with If-Match (the client's "conditional" update).
    patient.active = Some(true);
    patient.gender = Some(AdministrativeGender::Female);
    step!(
        ctx,
        "update Patient (PUT, If-Match W/\"1\")",
        match patient.update(true, client).await {
            Ok(created) => match (created, version_of_patient(&patient)) {
                (false, Some("2")) => Ok(((), "200, version 2 from ETag".to_owned())),
                (created, version) => Err(format!(
                    "created={created}, version {version:?}; expected an update to version 2"
                )),
            },
            Err(e) => Err(describe(&e)),
        }
    );

    // A stale If-Match must be refused and must not add a version.
    let mut stale = patient_v1.clone();
    stale.active = Some(false);
    ctx.check(
        "stale update (If-Match W/\"1\") is refused",
        match stale.update(true, client).await {
            Ok(created) => Err(format!(
                "server accepted a stale If-Match (created={created}, now version {:?})",
                version_of_patient(&stale)
            )),
            Err(ClientError::OperationOutcomeR4B(s, outcome))
                if s == StatusCode::PRECONDITION_FAILED || s == StatusCode::CONFLICT =>
            {
                let codes: Vec<String> = outcome
                    .issue
                    .iter()
                    .flatten()
                    .map(|i| format!("{}/{}", i.severity, i.code))
                    .collect();
                Ok(((), format!("HTTP {s}, OperationOutcome issues {codes:?}")))
            }
            Err(ClientError::Response(s, body)) => Err(format!(
                "HTTP {s}, but the client could not parse the body as an R4B OperationOutcome: {body}"
            )),
            Err(e) => Err(format!("expected 412 (or 409), got: {}", describe(&e))),
        },
    );

    ctx.check(
        "read unknown Patient",
        match client.read::<Patient>("no-such-patient").await {
            Ok(None) => Ok(((), "client reports not found".to_owned())),
            Ok(Some(p)) => Err(format!("got a Patient {:?}", p.id)),
            Err(e) => Err(format!("expected 404, got: {}", describe(&e))),
        },
    );

    ctx.check(
        "read updated Patient",
        match client.read::<Patient>(&patient_id).await {
            Ok(Some(p)) => {
                let mut diff = Diff::default();
                diff.eq("meta.versionId", version_of_patient(&p), Some("2"));
                diff.eq("active", p.active, Some(true));
                diff.eq("gender", p.gender, Some(AdministrativeGender::Female));
                check_patient_v1_fields(&mut diff, &p);
                diff.finish("versionId 2, active and gender set, other fields intact".into())
            }
            Ok(None) => Err("read returned not found".into()),
            Err(e) => Err(describe(&e)),
        },
    );

    // Instance history: newest first, with request and response on each entry.
    ctx.check(
        "Patient instance history",
        match client.history::<Patient>(Some(&patient_id)).await {
            Ok(page) => check_patient_history(page.bundle(), &patient_id),
            Err(e) => Err(describe(&e)),
        },
    );

    // Type history on a fresh database holds exactly this Patient's two versions.
    ctx.check(
        "Patient type history",
        match client.history::<Patient>(None).await {
            Ok(page) => {
                let bundle = page.bundle();
                let mut diff = Diff::default();
                diff.eq("Bundle.type", bundle.r#type, BundleType::History);
                let ids: Vec<Option<&str>> = page
                    .entries()
                    .map(|r| match r {
                        Resource::Patient(p) => p.id.as_deref(),
                        _ => None,
                    })
                    .collect();
                diff.eq("entries", ids, vec![Some(patient_id.as_str()); 2]);
                diff.finish("2 Patient entries".into())
            }
            Err(e) => Err(describe(&e)),
        },
    );

    // vread of version 1.
    ctx.check(
        "vread Patient/_history/1",
        match client.read_version::<Patient>(&patient_id, "1").await {
            Ok(Some(p)) => {
                let mut diff = Diff::default();
                diff.eq("meta.versionId", version_of_patient(&p), Some("1"));
                diff.eq("active", p.active, None);
                diff.eq("gender", p.gender, None);
                check_patient_v1_fields(&mut diff, &p);
                diff.finish("version 1 as created".into())
            }
            Ok(None) => Err("vread returned not found".into()),
            Err(e) => Err(describe(&e)),
        },
    );

    // JSON Patch on the Observation.
    ctx.check(
        "patch Observation (JSON Patch)",
        match client
            .patch_via_json(ResourceType::Observation, &observation_id)
            .replace("/status", "amended")
        {
            Ok(patch) => match patch.send().await {
                Ok(()) => match client.read::<Observation>(&observation_id).await {
                    Ok(Some(o)) => {
                        let mut diff = Diff::default();
                        diff.eq("status", o.status, ObservationStatus::Amended);
                        diff.eq("meta.versionId", version_of_observation(&o), Some("2"));
                        diff.finish("status amended, version 2".into())
                    }
                    Ok(None) => Err("read after patch returned not found".into()),
                    Err(e) => Err(format!("read after patch: {}", describe(&e))),
                },
                Err(e) => Err(describe(&e)),
            },
            Err(e) => Err(describe(&e)),
        },
    );

    // Delete the Observation, then reading it must fail as gone / not found.
    step!(
        ctx,
        "delete Observation",
        match client
            .delete(ResourceType::Observation, &observation_id)
            .await
        {
            Ok(()) => Ok(((), format!("Observation/{observation_id} deleted"))),
            Err(e) => Err(describe(&e)),
        }
    );

    ctx.check(
        "read deleted Observation",
        match client.read::<Observation>(&observation_id).await {
            Ok(None) => {
                // The client folds 404 and 410 into None; show which one the server chose.
                let url = format!("{base}/Observation/{observation_id}");
                let status = client
                    .send_custom_request(|http| http.get(url).header(header::ACCEPT, R4B_MIME))
                    .await
                    .map(|r| r.status().to_string())
                    .unwrap_or_else(|e| describe(&e));
                Ok((
                    (),
                    format!("client reports not found (server status {status})"),
                ))
            }
            Ok(Some(o)) => Err(format!(
                "deleted Observation is still readable (version {:?})",
                version_of_observation(&o)
            )),
            Err(e) => Err(format!("expected 404/410, got: {}", describe(&e))),
        },
    );

    ctx.check(
        "Observation history after delete",
        match client.history::<Observation>(Some(&observation_id)).await {
            Ok(page) => {
                let bundle = page.bundle();
                let entries: Vec<_> = bundle.entry.iter().flatten().collect();
                let mut diff = Diff::default();
                diff.eq("Bundle.type", bundle.r#type, BundleType::History);
                diff.eq("entry count", entries.len(), 3);
                let methods: Vec<Option<HTTPVerb>> = entries
                    .iter()
                    .map(|e| e.request.as_ref().map(|r| r.method))
                    .collect();
                diff.eq(
                    "request methods (newest first)",
                    methods,
                    vec![
                        Some(HTTPVerb::Delete),
                        Some(HTTPVerb::Patch),
                        Some(HTTPVerb::Post),
                    ],
                );
                if let Some(first) = entries.first() {
                    diff.eq(
                        "delete entry has a resource",
                        first.resource.is_some(),
                        false,
                    );
                }
                diff.finish("3 entries: DELETE, PATCH, POST".into())
            }
            Err(e) => Err(describe(&e)),
        },
    );
}

fn check_patient_history(bundle: &Bundle, patient_id: &str) -> Result<((), String), String> {
    let mut diff = Diff::default();
    diff.eq("Bundle.type", bundle.r#type, BundleType::History);
    let entries: Vec<_> = bundle.entry.iter().flatten().collect();
    diff.eq("entry count", entries.len(), 2);
    let versions: Vec<Option<&str>> = entries
        .iter()
        .map(|e| match &e.resource {
            Some(Resource::Patient(p)) => version_of_patient(p),
            _ => None,
        })
        .collect();
    diff.eq(
        "versions (newest first)",
        versions,
        vec![Some("2"), Some("1")],
    );
    let ids: Vec<Option<&str>> = entries
        .iter()
        .map(|e| match &e.resource {
            Some(Resource::Patient(p)) => p.id.as_deref(),
            _ => None,
        })
        .collect();
    diff.eq("ids", ids, vec![Some(patient_id); 2]);
    let methods: Vec<Option<HTTPVerb>> = entries
        .iter()
        .map(|e| e.request.as_ref().map(|r| r.method))
        .collect();
    diff.eq(
        "request methods",
        methods,
        vec![Some(HTTPVerb::Put), Some(HTTPVerb::Post)],
    );
    let statuses: Vec<Option<&str>> = entries
        .iter()
        .map(|e| e.response.as_ref().map(|r| r.status.as_str()))
        .collect();
    diff.eq(
        "response statuses",
        statuses,
        vec![Some("200 OK"), Some("201 Created")],
    );
    diff.finish("2 entries, versions 2 then 1, PUT then POST".into())
}

// ---------------------------------------------------------------------------------------------
// Server and database lifecycle

/// A running carnet server, killed on drop.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, database_url: &str, log: PathBuf) -> Result<Self, String> {
        let log_file =
            File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so that the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut server = Server {
            child,
            base: String::new(),
            log,
        };
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                return Err(format!(
                    "no listening line within 120 s{}",
                    server.log_tail()
                ))
            }
        };
        let url = line
            .trim()
            .strip_prefix("carnet listening on ")
            .ok_or_else(|| format!("unexpected first stdout line {line:?}{}", server.log_tail()))?;
        server.base = format!("{}/fhir", url.trim_end_matches('/'));
        Ok(server)
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n       ");
        if tail.is_empty() {
            String::new()
        } else {
            format!("; server log:\n       {tail}")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files or a PostgreSQL database to remove on drop.
enum Storage {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for Storage {
    fn drop(&mut self) {
        match self {
            Storage::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Storage::Postgres { admin_url, name } => {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                match psql(admin_url, &sql) {
                    Ok(()) => println!("     [postgres] dropped database {name}"),
                    Err(e) => eprintln!("warning: could not drop PostgreSQL database {name}: {e}"),
                }
            }
        }
    }
}

fn psql(admin_url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            admin_url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}_{}", std::process::id(), nanos % 1_000_000_000)
}

fn prepare(backend: &str) -> Result<(Storage, String), String> {
    match backend {
        "sqlite" => {
            let path = std::env::temp_dir().join(format!("carnet-fhir-sdk-{}.db", unique_suffix()));
            let url = format!("sqlite:{}", path.display());
            Ok((Storage::Sqlite(path), url))
        }
        "postgres" => {
            let base = std::env::var("CARNET_PG_BASE")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
            let base = base.trim_end_matches('/').to_owned();
            let admin_url = format!("{base}/postgres");
            let name = format!("carnet_fhir_sdk_{}", unique_suffix());
            psql(&admin_url, &format!("CREATE DATABASE \"{name}\""))?;
            let url = format!("{base}/{name}");
            Ok((Storage::Postgres { admin_url, name }, url))
        }
        other => Err(format!(
            "unknown backend {other:?} (expected sqlite or postgres)"
        )),
    }
}

fn run_backend(rt: &tokio::runtime::Runtime, bin: &Path, backend: &'static str, tally: &mut Tally) {
    let mut ctx = Ctx { tally, backend };
    let started = Instant::now();
    // Created before the server and dropped after it: kill the server first, then drop the data.
    let (storage, url) = match prepare(backend) {
        Ok(pair) => pair,
        Err(e) => return ctx.fail("prepare database", &e),
    };
    let log =
        std::env::temp_dir().join(format!("carnet-fhir-sdk-{backend}-{}.log", unique_suffix()));
    let server = match Server::start(bin, &url, log.clone()) {
        Ok(server) => server,
        Err(e) => {
            let _ = std::fs::remove_file(&log);
            return ctx.fail("start carnet", &e);
        }
    };
    println!(
        "     [{backend}] carnet at {} on {}",
        server.base,
        redact(&url)
    );

    // The server refuses requests without a token: fhir-sdk's login manager is called on the
    // first 401 and hands it an operator's token from `carnet token`.
    let token = match operator_token(bin, &url, &server.base) {
        Ok(token) => token,
        Err(e) => return ctx.fail("carnet token", &e),
    };
    let client = server
        .base
        .parse::<fhir_sdk::Url>()
        .map_err(|e| e.to_string())
        .and_then(|base_url| {
            R4bClient::builder()
                .base_url(base_url)
                .auth_callback(move |_http| {
                    let value = header::HeaderValue::from_str(&format!("Bearer {token}"));
                    async move { value }
                })
                .request_settings(
                    fhir_sdk::client::RequestSettings::default()
                        .timeout(Some(Duration::from_secs(60))),
                )
                .build()
                .map_err(|e| describe(&e))
        });
    match client {
        Ok(client) => {
            let failed_before = ctx.tally.failed;
            rt.block_on(scenario(&mut ctx, &client, &server.base));
            if ctx.tally.failed > failed_before {
                println!("     [{backend}] after the failure{}", server.log_tail());
            }
        }
        Err(e) => ctx.fail("build fhir-sdk client", &e),
    }
    drop(server);
    drop(storage);
    let _ = std::fs::remove_file(&log);
    println!(
        "     [{backend}] done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// An access token for every interaction (`system/*.cruds`), from `carnet token`.
fn operator_token(bin: &Path, database_url: &str, base: &str) -> Result<String, String> {
    let output = Command::new(bin)
        .args([
            "token",
            "--database-url",
            database_url,
            "--base-url",
            base,
            "--scope",
            "system/*.cruds",
        ])
        .output()
        .map_err(|e| format!("running {} token: {e}", bin.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn redact(url: &str) -> String {
    // No credentials are expected in these URLs, but never print a password if one is given.
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if url[scheme + 3..at].contains(':') => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn main() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| manifest_dir.join("../.."));
    let bin = std::env::var_os("CARNET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/debug/carnet"));
    let backends: Vec<&'static str> = std::env::var("CARNET_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".to_owned())
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| &*Box::leak(s.to_owned().into_boxed_str()))
        .collect();

    println!(
        "fhir-sdk 0.16 R4B client (sends {R4B_MIME:?}) against {}",
        bin.display()
    );
    let mut tally = Tally::default();
    if !bin.is_file() {
        tally.failed += 1;
        println!(
            "FAIL carnet binary not found at {} (run `cargo build` at the repo root, or set CARNET_BIN)",
            bin.display()
        );
    } else {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        for backend in backends {
            run_backend(&rt, &bin, backend, &mut tally);
        }
    }

    println!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        std::process::exit(1);
    }
}
