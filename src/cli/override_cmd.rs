//! `marketgate override set|list|clear|propose|approve|reject|adopt-empty|audit`: a
//! client of the admin API for operators. Owns the readable output and the exit codes;
//! never prints the token.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::rules::Status;

#[derive(Debug, clap::Args)]
pub struct OverrideArgs {
    #[command(subcommand)]
    pub action: OverrideAction,
    /// Base URL of the admin listener.
    #[arg(
        long,
        global = true,
        env = "MARKETGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub admin_url: String,
    /// A file holding the bearer token (else `MARKETGATE_ADMIN_TOKEN`).
    #[arg(long, global = true, env = "MARKETGATE_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum OverrideAction {
    /// Set (or replace) the override of one jurisdiction.
    Set {
        /// `*`, a group, a country (`FR`) or a subdivision (`US-CA`).
        jurisdiction: String,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// `name=on` or `name=off`; repeatable.
        #[arg(long = "feature", value_parser = parse_switch)]
        features: Vec<(String, bool)>,
        /// Why, for operators; required. Shown on the admin listener only.
        #[arg(long)]
        reason: String,
        /// What public answers (the 451 body, `/v1/decision`) say about the override;
        /// without it they say "an operator override".
        #[arg(long)]
        public_reason: Option<String>,
        /// How long, e.g. `90s`, `10m`, `2h`, `1d`.
        #[arg(long, conflicts_with = "expires_at")]
        ttl: Option<String>,
        /// Until when (RFC 3339 with offset).
        #[arg(long)]
        expires_at: Option<String>,
        /// Who (default: `$USER`).
        #[arg(long)]
        actor: Option<String>,
        /// Where changes need approval: apply this one at once because it only narrows
        /// (withdraw, limit, feature off); flagged in the audit for review.
        #[arg(long)]
        break_glass: bool,
    },
    /// List active overrides with their time left; with `--pending`, the proposals
    /// waiting for approval instead (`--all`: closed ones too).
    List {
        #[arg(long)]
        pending: bool,
        /// With `--pending`: also applied, rejected and expired proposals.
        #[arg(long, requires = "pending")]
        all: bool,
    },
    /// Remove the override of one jurisdiction.
    Clear {
        jurisdiction: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        actor: Option<String>,
        /// Where changes need approval: clear at once an override whose removal only
        /// narrows; flagged in the audit for review.
        #[arg(long)]
        break_glass: bool,
    },
    /// Propose a change for approval (four-eyes): it applies once enough approvers
    /// other than you approve it. Prints the proposal's id.
    Propose {
        jurisdiction: String,
        /// Propose clearing the override instead of setting one.
        #[arg(long, conflicts_with_all = ["status", "features", "public_reason", "ttl", "expires_at"])]
        clear: bool,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// `name=on` or `name=off`; repeatable.
        #[arg(long = "feature", value_parser = parse_switch)]
        features: Vec<(String, bool)>,
        /// Why, for the approvers; required.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        public_reason: Option<String>,
        /// How long the override lasts once applied, e.g. `2h`, `7d`.
        #[arg(long, conflicts_with = "expires_at")]
        ttl: Option<String>,
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        actor: Option<String>,
    },
    /// Approve a proposal (not your own); the last approval needed applies it.
    Approve { id: String },
    /// Reject a pending proposal.
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift every override at once and take the empty set (after Redis lost its data,
    /// instances restore their last snapshot instead unless an operator does this).
    /// Audited as `adopt_empty`.
    AdoptEmpty {
        #[arg(long)]
        reason: String,
        #[arg(long)]
        actor: Option<String>,
    },
    /// Show the audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusArg {
    Served,
    Limited,
    Withdrawn,
}

impl From<StatusArg> for Status {
    fn from(s: StatusArg) -> Status {
        match s {
            StatusArg::Served => Status::Served,
            StatusArg::Limited => Status::Limited,
            StatusArg::Withdrawn => Status::Withdrawn,
        }
    }
}

fn parse_switch(s: &str) -> Result<(String, bool), String> {
    let (name, v) = s
        .split_once('=')
        .ok_or("expected `name=on` or `name=off`")?;
    let on = match v {
        "on" | "true" => true,
        "off" | "false" => false,
        _ => return Err(format!("expected `on` or `off` after `{name}=`")),
    };
    Ok((name.to_string(), on))
}

fn token(args: &OverrideArgs) -> anyhow::Result<String> {
    let raw = match &args.token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read token file {}", f.display()))?,
        None => std::env::var("MARKETGATE_ADMIN_TOKEN")
            .context("no admin token: set MARKETGATE_ADMIN_TOKEN or pass --token-file")?,
    };
    let t = raw.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(!t.is_empty(), "the admin token is empty");
    Ok(t)
}

fn default_actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

/// One admin API call: (status code, JSON body).
fn call(
    args: &OverrideArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("{}{path}", args.admin_url.trim_end_matches('/'));
    let auth = format!("Bearer {}", token(args)?);
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        ("PUT", Some(b)) => agent.put(&url).header("Authorization", &auth).send_json(b),
        ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
        ("DELETE", Some(b)) => agent
            .delete(&url)
            .header("Authorization", &auth)
            .force_send_body()
            .send_json(b),
        _ => anyhow::bail!("unsupported call {method} {path}"),
    };
    let mut resp =
        resp.with_context(|| format!("cannot reach the admin API at {}", args.admin_url))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    Ok((status, json))
}

fn encode(j: &str) -> String {
    j.replace('*', "%2A")
}

/// Prints an error body and picks the exit code: 1 for a refusal.
fn refused(status: u16, body: &Value) -> ExitCode {
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or("request refused");
    let code = body["error"]["code"].as_str().unwrap_or("error");
    eprintln!("refused ({status} {code}): {msg}");
    if status == 401 {
        eprintln!("check the token (MARKETGATE_ADMIN_TOKEN or --token-file)");
    }
    ExitCode::from(1)
}

fn time_left(o: &Value) -> String {
    match o["remaining_seconds"].as_i64() {
        None => "no expiry".into(),
        Some(s) if s >= 3600 => format!("{}h{:02}m left", s / 3600, (s % 3600) / 60),
        Some(s) if s >= 60 => format!("{}m{:02}s left", s / 60, s % 60),
        Some(s) => format!("{s}s left"),
    }
}

fn describe(o: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(s) = o["status"].as_str() {
        parts.push(format!("status {s}"));
    }
    if let Some(f) = o["features"].as_object() {
        for (k, v) in f {
            parts.push(format!(
                "{k} {}",
                if v.as_bool() == Some(true) {
                    "on"
                } else {
                    "off"
                }
            ));
        }
    }
    let public = match o["public_reason"].as_str() {
        Some(p) => format!(" (public: {p:?})"),
        None => String::new(),
    };
    format!(
        "{:<8} {:<40} {:<18} by {} — {}{public}",
        o["jurisdiction"].as_str().unwrap_or("?"),
        parts.join(", "),
        time_left(o),
        o["actor"].as_str().unwrap_or("?"),
        o["reason"].as_str().unwrap_or("")
    )
}

/// The JSON of an override request (set or proposed).
fn override_body(
    status: Option<StatusArg>,
    features: &[(String, bool)],
    reason: &str,
    public_reason: &Option<String>,
    ttl: &Option<String>,
    expires_at: &Option<String>,
    actor: &Option<String>,
) -> Value {
    let features: BTreeMap<&str, bool> = features.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut b = json!({ "reason": reason, "actor": actor.clone().unwrap_or_else(default_actor) });
    if let Some(s) = status {
        b["status"] = json!(Status::from(s));
    }
    if !features.is_empty() {
        b["features"] = json!(features);
    }
    if let Some(p) = public_reason {
        b["public_reason"] = json!(p);
    }
    if let Some(t) = ttl {
        b["ttl"] = json!(t);
    }
    if let Some(t) = expires_at {
        b["expires_at"] = json!(t);
    }
    b
}

/// A proposal id as one path segment (ids are hex; anything else is sent encoded and
/// refused by the server as unknown).
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One proposal on one line.
fn describe_proposal(p: &Value) -> String {
    let change = match p["action"].as_str() {
        Some("clear") => format!("clear — {}", p["reason"].as_str().unwrap_or("")),
        _ => describe(&p["override"])
            .split_once(' ')
            .map(|(_, rest)| rest.trim_start().to_string())
            .unwrap_or_default(),
    };
    let approvals: Vec<&str> = p["approvals"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["by"].as_str()).collect())
        .unwrap_or_default();
    format!(
        "{} {:<8} {:<9} {} — proposed by {}, approvals {}/{}{}{}",
        p["id"].as_str().unwrap_or("?"),
        p["jurisdiction"].as_str().unwrap_or("?"),
        p["state"].as_str().unwrap_or("?"),
        change,
        p["proposed_by"].as_str().unwrap_or("?"),
        approvals.len(),
        p["required"],
        if approvals.is_empty() {
            String::new()
        } else {
            format!(" ({})", approvals.join(", "))
        },
        if p["narrowing"].as_bool() == Some(true) {
            ", narrowing"
        } else {
            ", widening"
        },
    )
}

pub fn run(args: OverrideArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = match &args.action {
        OverrideAction::Set {
            jurisdiction,
            status,
            features,
            reason,
            public_reason,
            ttl,
            expires_at,
            actor,
            break_glass,
        } => {
            let mut b = override_body(
                *status,
                features,
                reason,
                public_reason,
                ttl,
                expires_at,
                actor,
            );
            if *break_glass {
                b["break_glass"] = json!(true);
            }
            call(
                &args,
                "PUT",
                &format!("/admin/v1/overrides/{}", encode(jurisdiction)),
                Some(b),
            )?
        }
        OverrideAction::List { pending: false, .. } => {
            call(&args, "GET", "/admin/v1/overrides", None)?
        }
        OverrideAction::List { pending: true, all } => call(
            &args,
            "GET",
            &format!(
                "/admin/v1/proposals?state={}",
                if *all { "all" } else { "pending" }
            ),
            None,
        )?,
        OverrideAction::Clear {
            jurisdiction,
            reason,
            actor,
            break_glass,
        } => {
            let mut b =
                json!({ "reason": reason, "actor": actor.clone().unwrap_or_else(default_actor) });
            if *break_glass {
                b["break_glass"] = json!(true);
            }
            call(
                &args,
                "DELETE",
                &format!("/admin/v1/overrides/{}", encode(jurisdiction)),
                Some(b),
            )?
        }
        OverrideAction::Propose {
            jurisdiction,
            clear,
            status,
            features,
            reason,
            public_reason,
            ttl,
            expires_at,
            actor,
        } => {
            let b = if *clear {
                json!({ "action": "clear", "reason": reason, "actor": actor.clone().unwrap_or_else(default_actor) })
            } else {
                override_body(
                    *status,
                    features,
                    reason,
                    public_reason,
                    ttl,
                    expires_at,
                    actor,
                )
            };
            call(
                &args,
                "POST",
                &format!("/admin/v1/overrides/{}/proposals", encode(jurisdiction)),
                Some(b),
            )?
        }
        OverrideAction::Approve { id } => call(
            &args,
            "POST",
            &format!("/admin/v1/proposals/{}/approve", path_segment(id)),
            Some(json!({})),
        )?,
        OverrideAction::Reject { id, reason } => {
            let mut b = json!({});
            if let Some(r) = reason {
                b["reason"] = json!(r);
            }
            call(
                &args,
                "POST",
                &format!("/admin/v1/proposals/{}/reject", path_segment(id)),
                Some(b),
            )?
        }
        OverrideAction::AdoptEmpty { reason, actor } => {
            let b =
                json!({ "reason": reason, "actor": actor.clone().unwrap_or_else(default_actor) });
            call(&args, "POST", "/admin/v1/store/adopt-empty", Some(b))?
        }
        OverrideAction::Audit { limit } => call(
            &args,
            "GET",
            &format!("/admin/v1/audit?limit={limit}"),
            None,
        )?,
    };
    if !(200..300).contains(&status) {
        return Ok(refused(status, &body));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &args.action {
        OverrideAction::Set { .. } => {
            println!(
                "set (version {}): {}",
                body["version"],
                describe(&body["override"])
            );
            if let Some(d) = body["decision"].as_object() {
                println!(
                    "now {}: {}",
                    d.get("jurisdiction").and_then(Value::as_str).unwrap_or("?"),
                    d.get("status").and_then(Value::as_str).unwrap_or("?")
                );
            }
        }
        OverrideAction::List { pending: true, .. } => {
            let list = body["proposals"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no pending proposals");
            }
            for p in &list {
                println!("{}", describe_proposal(p));
            }
        }
        OverrideAction::Propose { .. } => {
            let p = &body["proposal"];
            println!(
                "proposed {} (needs {} approval(s) by others, until {})",
                p["id"].as_str().unwrap_or("?"),
                p["missing_approvals"],
                p["expires_at"].as_str().unwrap_or("?")
            );
            println!("{}", describe_proposal(p));
        }
        OverrideAction::Approve { id } => match body["applied"].as_object() {
            Some(a) => println!(
                "approved {id}: applied (version {})",
                a.get("version").cloned().unwrap_or_default()
            ),
            None => println!(
                "approved {id}: {} more approval(s) needed",
                body["proposal"]["missing_approvals"]
            ),
        },
        OverrideAction::Reject { id, .. } => println!("rejected {id}"),
        OverrideAction::List { pending: false, .. } => {
            let list = body["overrides"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no active overrides (version {})", body["version"]);
            }
            for o in &list {
                println!("{}", describe(o));
            }
        }
        OverrideAction::Clear { jurisdiction, .. } => {
            println!("cleared {jurisdiction} (version {})", body["version"]);
        }
        OverrideAction::AdoptEmpty { .. } => {
            let lifted: Vec<&str> = body["lifted"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "empty set adopted (version {}); lifted: {}",
                body["version"],
                if lifted.is_empty() {
                    "none".to_string()
                } else {
                    lifted.join(", ")
                }
            );
        }
        OverrideAction::Audit { .. } => {
            for e in body["entries"].as_array().cloned().unwrap_or_default() {
                let mut flags = String::new();
                if e["break_glass"].as_bool() == Some(true) {
                    flags.push_str(" [BREAK GLASS: to review]");
                }
                if let Some(p) = e["proposal"].as_str() {
                    flags.push_str(&format!(" [proposal {p}]"));
                }
                if let Some(a) = e["approved_by"].as_array() {
                    let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                    flags.push_str(&format!(" [approved by {}]", names.join(", ")));
                }
                println!(
                    "{} v{} {:<7} {:<8} by {} — {}{flags}",
                    e["at"].as_str().unwrap_or("?"),
                    e["version"],
                    e["action"].as_str().unwrap_or("?"),
                    e["jurisdiction"].as_str().unwrap_or("?"),
                    e["actor"].as_str().unwrap_or("?"),
                    e["reason"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
