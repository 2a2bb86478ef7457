//! JSON Web Tokens in compact form, on ring: signed with the server's RSA key (RS256, what
//! SMART test kits require of id_tokens), verified against that key or a client's JWK (RS384,
//! ES384). The verifier decides which algorithm it accepts; a token never chooses (`none`, or
//! HS256 keyed with a public key, are refused because nothing here implements them).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Why a token was refused; the text is safe to show to its bearer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JwtError(pub String);

fn err(message: impl Into<String>) -> JwtError {
    JwtError(message.into())
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Jwt<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// Splits `token` into header, claims and signature; refuses anything that is not three
/// base64url parts holding JSON objects.
pub fn decode(token: &str) -> Result<Jwt<'_>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err("not a JWT: it must have three dot-separated parts"));
    };
    let object = |part: &str, what: &str| -> Result<Map<String, Value>, JwtError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| err(format!("the JWT {what} is not base64url")))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(err(format!("the JWT {what} is not a JSON object"))),
        }
    };
    Ok(Jwt {
        header: object(header, "header")?,
        claims: object(claims, "claims")?,
        signing_input: &token[..header.len() + 1 + claims.len()],
        signature: URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| err("the JWT signature is not base64url"))?,
    })
}

impl Jwt<'_> {
    pub fn alg(&self) -> &str {
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Checks the signature with `key`, under one of the algorithms in `accepted`.
    pub fn verify(&self, key: &VerifyingKey, accepted: &[&str]) -> Result<(), JwtError> {
        let alg = self.alg();
        if !accepted.contains(&alg) {
            return Err(err(format!(
                "the JWT is signed with '{alg}'; accepted here: {}",
                accepted.join(", ")
            )));
        }
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)
    }

    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A time claim (NumericDate): a JSON integer, never a string.
    pub fn time_claim(&self, name: &str) -> Result<Option<i64>, JwtError> {
        match self.claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| err(format!("the JWT claim '{name}' must be an integer"))),
            Some(_) => Err(err(format!(
                "the JWT claim '{name}' must be a number of seconds, not {}",
                kind_of(self.claims.get(name))
            ))),
        }
    }

    /// Whether `aud` (a string or an array of strings) names `audience`.
    pub fn has_audience(&self, audience: &str) -> bool {
        match self.claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        }
    }
}

fn kind_of(value: Option<&Value>) -> &'static str {
    match value {
        Some(Value::String(_)) => "a string",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
        Some(Value::Null) => "null",
        _ => "this",
    }
}

/// A public key that verifies signatures.
#[derive(Debug, Clone)]
pub enum VerifyingKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    EcP384 { point: Vec<u8> },
}

impl VerifyingKey {
    /// The key of a JWK (`kty` RSA, or EC on P-384).
    pub fn from_jwk(jwk: &Map<String, Value>) -> Option<VerifyingKey> {
        let field = |name: &str| {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        };
        match jwk.get("kty").and_then(Value::as_str)? {
            "RSA" => Some(VerifyingKey::Rsa {
                n: field("n")?,
                e: field("e")?,
            }),
            "EC" if jwk.get("crv").and_then(Value::as_str) == Some("P-384") => {
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 48 || y.len() != 48 {
                    return None;
                }
                let mut point = vec![4];
                point.extend(x);
                point.extend(y);
                Some(VerifyingKey::EcP384 { point })
            }
            _ => None,
        }
    }

    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        let bad = || err("the JWT signature does not verify");
        match (self, alg) {
            (VerifyingKey::Rsa { n, e }, "RS256" | "RS384") => {
                let params = if alg == "RS256" {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA384
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .map_err(|_| bad())
            }
            (VerifyingKey::EcP384 { point }, "ES384") => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .map_err(|_| bad())
            }
            _ => Err(err(format!(
                "the JWT algorithm '{alg}' does not match the key it names"
            ))),
        }
    }
}

/// The server's signing key: RSA, RS256.
pub struct SigningKey {
    pair: RsaKeyPair,
    kid: String,
    public: VerifyingKey,
}

impl SigningKey {
    /// The key in `pkcs8` (DER), as stored in the database.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, String> {
        let pair = RsaKeyPair::from_pkcs8(pkcs8)
            .map_err(|e| format!("the stored token signing key is unusable: {e}"))?;
        let components: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        Ok(SigningKey {
            kid: URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]),
            public: VerifyingKey::Rsa {
                n: components.n,
                e: components.e,
            },
            pair,
        })
    }

    /// A new 2048-bit key, as PKCS#8 DER. ring verifies and signs RSA but does not generate
    /// RSA keys.
    pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| format!("cannot generate the token signing key: {e}"))?;
        Ok(key
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the token signing key: {e}"))?
            .as_bytes()
            .to_vec())
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The compact JWT of `claims`, typed `typ` (`JWT`, or `at+jwt` for access tokens).
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let header = serde_json::json!({"alg": "RS256", "typ": typ, "kid": self.kid});
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                token.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing with a valid key and buffer does not fail");
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        token
    }

    /// The public key as a JWK, for the JWKS endpoint.
    pub fn jwk(&self) -> Value {
        let VerifyingKey::Rsa { n, e } = &self.public else {
            unreachable!("the signing key is RSA")
        };
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap())
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let token = key().sign("JWT", &serde_json::json!({"sub": "a", "exp": 10}));
        let jwt = decode(&token).unwrap();
        jwt.verify(key().verifying_key(), &["RS256"]).unwrap();
        assert_eq!(jwt.kid(), Some(key().kid()));
        let forged = token.replacen(
            token.split('.').nth(1).unwrap(),
            &URL_SAFE_NO_PAD.encode(r#"{"sub":"b","exp":10}"#),
            1,
        );
        assert!(decode(&forged)
            .unwrap()
            .verify(key().verifying_key(), &["RS256"])
            .is_err());
    }

    #[test]
    fn the_verifier_chooses_the_algorithm() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"a"}"#)
        );
        let jwt = decode(&none).unwrap();
        assert!(jwt.verify(key().verifying_key(), &["RS256"]).is_err());
        let token = key().sign("JWT", &serde_json::json!({}));
        // RS256 where only RS384 is accepted.
        assert!(decode(&token)
            .unwrap()
            .verify(key().verifying_key(), &["RS384"])
            .is_err());
    }

    #[test]
    fn times_must_be_numbers() {
        let token = key().sign("JWT", &serde_json::json!({"exp": "9999999999"}));
        assert!(decode(&token).unwrap().time_claim("exp").is_err());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(decode("a.b").is_err());
        assert!(decode("a.b.c.d").is_err());
        assert!(decode("!!.e30.").is_err());
    }
}
