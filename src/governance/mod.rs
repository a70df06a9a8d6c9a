//! Who may do what on the admin listener: roles, scopes and the admin tokens that carry
//! them. Owns the token file's line syntax (a token or its `sha256:` digest, then
//! `role=`, `scope=`, `name=`) and the checks the admin API makes. Never holds a token in
//! clear (only its SHA-256 digest), never prints one, and never does I/O (except
//! `webhooks`, which announces the changes that alter decisions). The engine never
//! imports it.

pub mod approval;
pub mod webhooks;

use std::fmt;

use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::location::Jurisdiction;
use crate::rules::RuleSet;

/// What a token may do, each role including the ones before it:
/// `viewer` < `operator` < `approver` < `admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything on the admin listener: overrides, audit, rules, jurisdictions.
    Viewer,
    /// Also sets and clears overrides inside its scope, and reloads the rules with the
    /// global scope.
    Operator,
    /// Also approves other people's changes (four-eyes; the approval workflow is not
    /// built yet, so today an approver acts as an operator).
    Approver,
    /// Everything, including lifting every override at once (`adopt-empty`).
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The jurisdictions a token acts on: `*` (every one), or a list of groups, countries
/// and subdivisions. A group covers itself, its member countries and their
/// subdivisions (membership as the rules in force declare it); a country covers itself
/// and its subdivisions. Only `*` covers `*`, `unknown` and whole-set acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Only(Vec<Jurisdiction>),
}

impl Scope {
    /// Parses `*` or a comma-separated list of jurisdiction codes (`EU,CH,US-CA`).
    pub fn parse(s: &str) -> Result<Scope, String> {
        let mut list = Vec::new();
        for code in s.split(',').map(str::trim) {
            match Jurisdiction::parse(code) {
                Some(Jurisdiction::Global) => return Ok(Scope::Global),
                Some(j) => list.push(j),
                None => return Err(format!("`{code}` is not a jurisdiction code")),
            }
        }
        Ok(Scope::Only(list))
    }

    pub fn is_global(&self) -> bool {
        matches!(self, Scope::Global)
    }

    /// Whether acting on `j` stays inside this scope, with `rules`' groups.
    pub fn covers(&self, j: &Jurisdiction, rules: &RuleSet) -> bool {
        let Scope::Only(list) = self else {
            return true;
        };
        let country = match j {
            Jurisdiction::Country(c) | Jurisdiction::Subdivision(c, _) => Some(*c),
            _ => None,
        };
        list.iter().any(|s| {
            s == j
                || match (s, country) {
                    (Jurisdiction::Country(c), Some(_)) => {
                        matches!(j, Jurisdiction::Subdivision(jc, _) if jc == c)
                    }
                    (Jurisdiction::Group(g), Some(c)) => rules
                        .groups()
                        .iter()
                        .any(|x| x.name == *g && x.members.contains(&c)),
                    _ => false,
                }
        })
    }

    /// The codes, for answers and logs (`["*"]`, `["EU", "CH"]`).
    pub fn codes(&self) -> Vec<String> {
        match self {
            Scope::Global => vec!["*".into()],
            Scope::Only(l) => l.iter().map(|j| j.to_string()).collect(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.codes().join(","))
    }
}

/// An admin token as configured: the SHA-256 digest of the bearer token (computed at
/// load from a token in clear, or given as `sha256:HEX`), its role, scope and an
/// optional name (who holds it; the default actor of the changes it makes).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    digest: [u8; 32],
    pub role: Role,
    pub scope: Scope,
    pub name: Option<String>,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("digest", &"***")
            .field("role", &self.role)
            .field("scope", &self.scope)
            .field("name", &self.name)
            .finish()
    }
}

/// The smallest length of a token in clear.
pub const MIN_TOKEN_LEN: usize = 16;

/// The longest token name.
pub const MAX_NAME_LEN: usize = 64;

impl AdminToken {
    /// A token with every right: role `admin`, scope `*`. What a token from
    /// `admin_tokens` (flag, variable or config key) is, as before roles existed.
    pub fn admin(secret: &Secret) -> AdminToken {
        AdminToken {
            digest: digest(secret.expose().as_bytes()),
            role: Role::Admin,
            scope: Scope::Global,
            name: None,
        }
    }

    /// A token from its value (in clear, or `sha256:HEX`), with a role and scope.
    pub fn new(value: &str, role: Role, scope: Scope) -> Result<AdminToken, String> {
        Ok(AdminToken {
            digest: token_digest(value)?,
            role,
            scope,
            name: None,
        })
    }

    pub fn named(mut self, name: impl Into<String>) -> AdminToken {
        self.name = Some(name.into());
        self
    }

    /// One line of a token file: `TOKEN [role=ROLE] [scope=J[,J...]] [name=NAME]`, where
    /// `TOKEN` is the token in clear (at least 16 characters, no whitespace) or
    /// `sha256:` and the 64 hex digits of its SHA-256. Role defaults to `admin` and scope
    /// to `*`, so a file of bare tokens means what it meant before roles. Problems never
    /// quote the token.
    pub fn parse_line(line: &str) -> Result<AdminToken, String> {
        let mut fields = line.split_ascii_whitespace();
        let value = fields.next().ok_or("the line is empty")?;
        let mut t = AdminToken {
            digest: token_digest(value)?,
            role: Role::Admin,
            scope: Scope::Global,
            name: None,
        };
        let (mut role, mut scope, mut name) = (false, false, false);
        for (i, field) in fields.enumerate() {
            let (key, v) = field.split_once('=').ok_or_else(|| {
                format!(
                    "field {} is not `role=`, `scope=` or `name=` (a token cannot contain whitespace)",
                    i + 2
                )
            })?;
            let seen = match key {
                "role" => {
                    t.role = Role::parse(v).ok_or_else(|| {
                        format!("unknown role `{v}` (expected viewer, operator, approver or admin)")
                    })?;
                    &mut role
                }
                "scope" => {
                    t.scope = Scope::parse(v)?;
                    &mut scope
                }
                "name" => {
                    let ok = !v.is_empty()
                        && v.len() <= MAX_NAME_LEN
                        && v.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@')
                        });
                    if !ok {
                        return Err(format!(
                            "a name is 1 to {MAX_NAME_LEN} letters, digits, `.`, `_`, `-` or `@`"
                        ));
                    }
                    t.name = Some(v.to_string());
                    &mut name
                }
                other => {
                    return Err(format!(
                        "unknown field `{other}=` (expected role=, scope= or name=)"
                    ))
                }
            };
            if std::mem::replace(seen, true) {
                return Err(format!("`{key}=` is given twice"));
            }
        }
        Ok(t)
    }

    /// The SHA-256 of the bearer token.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Checks `need` against this token; `Err` says what is missing.
    pub fn allows(
        &self,
        need: Need,
        on: Option<&Jurisdiction>,
        rules: &RuleSet,
    ) -> Result<(), Denied> {
        if self.role < need.role {
            return Err(Denied::Role {
                need: need.role,
                have: self.role,
            });
        }
        let target = match (need.scope, on) {
            (ScopeRule::None, _) => return Ok(()),
            (ScopeRule::Global, _) => Jurisdiction::Global,
            (ScopeRule::Jurisdiction, Some(j)) => j.clone(),
            (ScopeRule::Jurisdiction, None) => Jurisdiction::Global,
        };
        if self.scope.covers(&target, rules) {
            Ok(())
        } else {
            Err(Denied::Scope {
                jurisdiction: target.to_string(),
                have: self.scope.codes(),
            })
        }
    }
}

/// The SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A token value's digest: `sha256:HEX` as given, or the SHA-256 of a token in clear of
/// at least [`MIN_TOKEN_LEN`] characters.
pub fn token_digest(value: &str) -> Result<[u8; 32], String> {
    if let Some(hex) = value.strip_prefix("sha256:") {
        return parse_hex32(hex)
            .ok_or_else(|| "`sha256:` must be followed by 64 hex digits".to_string());
    }
    if value.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a token must have at least {MIN_TOKEN_LEN} characters"
        ));
    }
    Ok(digest(value.as_bytes()))
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Which jurisdiction an endpoint's scope check is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRule {
    /// No scope check (reads).
    None,
    /// The jurisdiction acted on: the path's, or the proposal's.
    Jurisdiction,
    /// The act touches every jurisdiction: only scope `*` may.
    Global,
}

/// What an endpoint needs of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub role: Role,
    pub scope: ScopeRule,
}

impl Need {
    pub const fn new(role: Role, scope: ScopeRule) -> Need {
        Need { role, scope }
    }

    /// In words, for the API document: `operator, with the jurisdiction in scope`.
    pub fn describe(&self) -> String {
        let scope = match self.scope {
            ScopeRule::None => "",
            ScopeRule::Jurisdiction => ", with the jurisdiction in its scope",
            ScopeRule::Global => ", with scope `*`",
        };
        format!("`{}` or above{scope}", self.role)
    }
}

/// Why a token may not do something (403).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    Role {
        need: Role,
        have: Role,
    },
    Scope {
        jurisdiction: String,
        have: Vec<String>,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Role { need, have } => write!(
                f,
                "this needs role `{need}` or above; the token's role is `{have}`"
            ),
            Denied::Scope { jurisdiction, have } => write!(
                f,
                "`{jurisdiction}` is outside the token's scope ({})",
                have.join(",")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RuleSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
        RuleSet::load(&dir, jiff::Timestamp::UNIX_EPOCH)
            .expect("the shipped rules load")
            .0
    }

    fn j(code: &str) -> Jurisdiction {
        Jurisdiction::parse(code).unwrap()
    }

    #[test]
    fn token_lines_parse_with_defaults_and_never_quote_the_token() {
        let t = AdminToken::parse_line("0123456789abcdef-secret").unwrap();
        assert_eq!(
            (t.role, &t.scope, &t.name),
            (Role::Admin, &Scope::Global, &None)
        );
        assert_eq!(t.digest(), &digest(b"0123456789abcdef-secret"));
        let h = hex(&digest(b"0123456789abcdef-secret"));
        let t = AdminToken::parse_line(&format!(
            "sha256:{h} role=operator scope=EU,CH name=eu-oncall"
        ))
        .unwrap();
        assert_eq!(t.digest(), &digest(b"0123456789abcdef-secret"));
        assert_eq!(t.role, Role::Operator);
        assert_eq!(t.scope, Scope::Only(vec![j("EU"), j("CH")]));
        assert_eq!(t.name.as_deref(), Some("eu-oncall"));
        let t = AdminToken::parse_line(&format!(
            "sha256:{} role=viewer scope=FR,*",
            h.to_uppercase()
        ))
        .unwrap();
        assert_eq!(t.scope, Scope::Global);
        for (line, problem) in [
            ("short-token", "at least 16"),
            ("sha256:abc", "64 hex digits"),
            ("0123456789abcdef-secret role=root", "unknown role `root`"),
            ("0123456789abcdef-secret role=viewer role=admin", "twice"),
            (
                "0123456789abcdef-secret scope=EU,??",
                "`??` is not a jurisdiction",
            ),
            ("0123456789abcdef-secret name=a/b", "a name is"),
            (
                "0123456789abcdef-secret color=red",
                "unknown field `color=`",
            ),
            ("0123456789abcdef secret-part", "field 2"),
        ] {
            let e = AdminToken::parse_line(line).unwrap_err();
            assert!(e.contains(problem), "{line}: {e}");
            assert!(
                !e.contains("0123456789abcdef") && !e.contains("secret-part"),
                "{e}"
            );
        }
        let shown = format!(
            "{:?}",
            AdminToken::parse_line("0123456789abcdef-secret").unwrap()
        );
        assert!(
            !shown.contains("0123") && shown.contains("Admin"),
            "{shown}"
        );
    }

    #[test]
    fn scopes_cover_members_and_subdivisions_and_only_global_covers_the_rest() {
        let r = rules();
        let eu = Scope::parse("EU").unwrap();
        for inside in ["EU", "FR", "DE", "ES-CT"] {
            assert!(eu.covers(&j(inside), &r), "{inside}");
        }
        for outside in ["*", "unknown", "US", "US-CA", "CH", "EEA"] {
            assert!(!eu.covers(&j(outside), &r), "{outside}");
        }
        let us = Scope::parse("US,CH").unwrap();
        assert!(us.covers(&j("US-CA"), &r) && us.covers(&j("CH"), &r));
        assert!(!us.covers(&j("FR"), &r) && !us.covers(&j("EU"), &r));
        let ca = Scope::parse("US-CA").unwrap();
        assert!(ca.covers(&j("US-CA"), &r) && !ca.covers(&j("US"), &r));
        assert!(Scope::Global.covers(&Jurisdiction::Global, &r));
        // A group the rules do not declare covers only its own name.
        let nowhere = Scope::parse("NOSUCHGROUP").unwrap();
        assert!(!nowhere.covers(&j("FR"), &r));
    }

    #[test]
    fn needs_check_role_then_scope() {
        let r = rules();
        let t = AdminToken::new(
            "0123456789abcdef-secret",
            Role::Operator,
            Scope::parse("EU").unwrap(),
        )
        .unwrap();
        let write = Need::new(Role::Operator, ScopeRule::Jurisdiction);
        assert_eq!(t.allows(write, Some(&j("FR")), &r), Ok(()));
        assert_eq!(
            t.allows(write, Some(&j("US")), &r),
            Err(Denied::Scope {
                jurisdiction: "US".into(),
                have: vec!["EU".into()]
            })
        );
        assert_eq!(
            t.allows(Need::new(Role::Admin, ScopeRule::Global), None, &r),
            Err(Denied::Role {
                need: Role::Admin,
                have: Role::Operator
            })
        );
        assert!(matches!(
            t.allows(Need::new(Role::Operator, ScopeRule::Global), None, &r),
            Err(Denied::Scope { .. })
        ));
        assert_eq!(
            t.allows(Need::new(Role::Viewer, ScopeRule::None), None, &r),
            Ok(())
        );
        assert!(Role::Viewer < Role::Operator && Role::Approver < Role::Admin);
    }
}
