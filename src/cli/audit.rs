//! `marketgate audit verify`: checks the audit log's hash chain in the store `serve` is
//! configured with (the state directory's JSONL files, or the Redis stream) and names
//! the first bad entry. Reads the same configuration as `serve` (file, `MARKETGATE_*`
//! environment, flags); the checking itself is [`crate::store::chain`]'s.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, RawConfig};
use crate::store::chain::Report;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain; print where it starts and the first bad entry.
    /// Exit 0 when intact, 1 when an entry was edited, removed, added or moved, 2 when
    /// the log cannot be read.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// YAML config file, as for `serve` (env MARKETGATE_CONFIG).
    #[arg(long, env = "MARKETGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The embedded store's state directory [env MARKETGATE_STATE_DIR; key state_dir;
    /// default `state`].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Check the Redis store's stream instead [env MARKETGATE_REDIS; key redis].
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    pub format: VerifyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MARKETGATE_"))
        .collect();
    let flags = RawConfig {
        state_dir: args.state_dir,
        redis: args.redis,
        ..RawConfig::default()
    };
    let config = match Config::load(args.config.as_deref(), &env, flags) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("marketgate: invalid configuration:\n{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    let store = config.store();
    let source = match &store.redis {
        Some(r) => format!("redis stream {}:audit at {}", r.prefix, r.url),
        None => format!("{}", store.state_dir.join("audit.jsonl").display()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = match rt.block_on(crate::store::verify_audit(&store)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "marketgate: cannot read the audit log ({source}): {}",
                crate::store::error_chain(&e)
            );
            return Ok(ExitCode::from(2));
        }
    };
    let text = match args.format {
        VerifyFormat::Json => {
            let mut v = serde_json::to_value(&report)?;
            v["source"] = source.into();
            v["intact"] = report.is_intact().into();
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        VerifyFormat::Text => render(&report, &source),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report in words, one fact a line.
pub fn render(r: &Report, source: &str) -> String {
    let mut out = format!("audit log: {source}\nentries checked: {}\n", r.entries);
    if r.unchained > 0 {
        out.push_str(&format!(
            "{} entries at the old end carry no hash (written before the chain existed); only the last of them is protected\n",
            r.unchained
        ));
    }
    match &r.chain_starts_at {
        Some(at) if r.predecessor_gone => out.push_str(&format!(
            "chain starts at {at}, after an entry no longer in the log (rotated away or trimmed)\n"
        )),
        Some(at) => out.push_str(&format!("chain starts at {at}\n")),
        None if r.entries == 0 => out.push_str("the log is empty\n"),
        None => out.push_str("no entry carries a hash yet\n"),
    }
    if let Some(head) = &r.head {
        out.push_str(&format!("head: {head}\n"));
    }
    if !r.head_checked {
        out.push_str("the store records no head, so removals at the end cannot be told\n");
    }
    match &r.problem {
        None => out.push_str("intact\n"),
        Some(p) => {
            let version = p
                .version
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default();
            out.push_str(&format!("BROKEN at {}{version}: {}\n", p.at, p.what));
        }
    }
    out
}
