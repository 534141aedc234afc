//! Basic proxy authentication (RFC 7617, RFC 9110 §11.7). Credentials are compared, never logged or forwarded.

use std::path::Path;

use base64::Engine as _;
use thiserror::Error;

/// The users allowed through, and the realm named in the challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub realm: String,
    users: Vec<(String, String)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("Auth").field("realm", &self.realm).field("users", &names).finish()
    }
}

/// A credential entry or file that cannot be used.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("credentials must be `user:password` with a non-empty user and no colon in the user")]
    Malformed,
    #[error("reading the auth file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("auth file {path} line {line}: credentials must be `user:password`")]
    FileLine { path: String, line: usize },
    #[error("auth file {0} holds no users")]
    Empty(String),
}

/// Outcome of checking a request's `Proxy-Authorization` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCheck {
    Ok,
    Missing,
    Invalid,
}

impl Auth {
    pub fn new(realm: impl Into<String>) -> Self {
        Auth { realm: realm.into(), users: Vec::new() }
    }

    /// Adds a user from `user:password` (the password may contain colons, the user may not: RFC 7617 §2).
    pub fn add(&mut self, spec: &str) -> Result<(), AuthError> {
        let (user, pass) = spec.split_once(':').ok_or(AuthError::Malformed)?;
        if user.is_empty() || user.chars().any(char::is_control) || pass.chars().any(char::is_control) {
            return Err(AuthError::Malformed);
        }
        self.users.push((user.to_owned(), pass.to_owned()));
        Ok(())
    }

    /// Reads `user:password` lines; blank lines and lines starting with `#` are skipped.
    pub fn add_file(&mut self, path: &Path) -> Result<(), AuthError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::File { path: shown.clone(), source })?;
        let before = self.users.len();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            self.add(line).map_err(|_| AuthError::FileLine { path: shown.clone(), line: i + 1 })?;
        }
        if self.users.len() == before {
            return Err(AuthError::Empty(shown));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks the values of every `Proxy-Authorization` field line; more than one line is invalid.
    pub fn check<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> AuthCheck {
        let Some(value) = values.next() else {
            return AuthCheck::Missing;
        };
        if values.next().is_some() {
            return AuthCheck::Invalid;
        }
        match self.decode(value) {
            Some((user, pass)) if self.known(&user, &pass) => AuthCheck::Ok,
            _ => AuthCheck::Invalid,
        }
    }

    /// `Basic <token68>`: the scheme is case-insensitive (RFC 9110 §11.1), exactly one space before the token.
    fn decode(&self, value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let space = value.iter().position(|&b| b == b' ')?;
        let (scheme, token) = (&value[..space], &value[space + 1..]);
        if !scheme.eq_ignore_ascii_case(b"basic") || token.is_empty() || token.len() > 4096 {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
    }

    fn known(&self, user: &[u8], pass: &[u8]) -> bool {
        // Check every entry without stopping early, so timing says little about which part matched.
        self.users.iter().fold(false, |found, (u, p)| found | (ct_eq(u.as_bytes(), user) & ct_eq(p.as_bytes(), pass)))
    }

    /// The `Proxy-Authenticate` challenge (RFC 7617 §2, with the UTF-8 charset parameter of §2.1).
    pub fn challenge(&self) -> String {
        let realm: String = self.realm.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
        format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_credentials() {
        let mut a = Auth::new("proxy");
        a.add("alice:s3:cret").unwrap();
        let good = format!("Basic {}", b64("alice:s3:cret"));
        let shouty = format!("bASIC {}", b64("alice:s3:cret"));
        assert_eq!(a.check([good.as_bytes()].into_iter()), AuthCheck::Ok);
        assert_eq!(a.check([shouty.as_bytes()].into_iter()), AuthCheck::Ok);
        assert_eq!(a.check(std::iter::empty()), AuthCheck::Missing);
        for bad in [
            format!("Basic {}", b64("alice:wrong")),
            format!("Basic {}", b64("bob:s3:cret")),
            format!("Basic {}", b64("alices3cret")),
            format!("Basic  {}", b64("alice:s3:cret")),
            "Basic !!!".to_owned(),
            format!("Bearer {}", b64("alice:s3:cret")),
            "Basic".to_owned(),
        ] {
            assert_eq!(a.check([bad.as_bytes()].into_iter()), AuthCheck::Invalid, "{bad}");
        }
        assert_eq!(a.check([good.as_bytes(), good.as_bytes()].into_iter()), AuthCheck::Invalid);
        assert!(a.add("nocolon").is_err() && a.add(":pw").is_err());
        assert_eq!(a.challenge(), "Basic realm=\"proxy\", charset=\"UTF-8\"");
        assert!(!format!("{a:?}").contains("s3:cret"));
    }
}
