//! The public transparency page (`/transparency`, `.json`, `.atom`) over real HTTP: what
//! it lists from the example rules, what it never shows (an override's reason and
//! actor, private demands, file paths), a rules reload, the feed through a real feed
//! parser (Python `feedparser`), the JSON against its schema in the OpenAPI document
//! (Python `jsonschema`), `marketgate transparency render` (also from git history),
//! and the page in a real headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::console::{artifact_dir, chromium, session, Driver};
use crate::server::{at, get, repo, TestServer};
use crate::support::gateway::skip_or_fail;

fn copy_regions() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("regions")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn market<'a>(report: &'a Value, code: &str) -> Option<&'a Value> {
    report["markets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["jurisdiction"] == code)
}

#[test]
fn the_page_json_and_feed_list_every_market_left_or_limited_and_why() {
    let s = TestServer::start(|_| {});
    let page = get(&s.url("/transparency"), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-") && !csp.contains("script"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let html = &page.body;
    for words in [
        "<html lang=\"en\">",
        "name=\"viewport\"",
        "Russia (RU)",
        "withdrawn</span> since <time datetime=\"2018-06-30T21:00:00Z\"",
        "Federal law requiring messaging services to provide decryption keys",
        "href=\"https://example.org/ru-decryption-keys-law\"",
        "we left the market rather than comply",
        "India (IN)",
        "we switched off: payments",
        "Utah (US-UT)",
        // Upcoming: the EU's proposed scanning regulation.
        "Proposed regulation laying down rules to prevent and combat child sexual abuse",
        // ... and what the company will do about it, in the future tense.
        "we will leave the market rather than comply (a red line)",
        "Reaches</dt><dd>25% of users",
        "href=\"transparency.atom\"",
    ] {
        assert!(html.contains(words), "{words} not in {html}");
    }
    // No script, no external asset, no file name or position.
    for absent in ["<script", "src=", ".yaml", "regions/", "http://", "@import"] {
        assert!(!html.contains(absent), "{absent} in {html}");
    }

    let j = get(&s.url("/transparency.json"), &[]);
    assert_eq!(j.header("content-type"), Some("application/json"));
    let r = j.json();
    assert_eq!(r["at"], at().to_string());
    let ru = market(&r, "RU").unwrap();
    assert_eq!(ru["status"], "withdrawn");
    assert_eq!(ru["since"], "2018-06-30T21:00:00Z");
    assert_eq!(
        ru["disabled"],
        json!([]),
        "everything is off when withdrawn"
    );
    assert_eq!(
        ru["grounds"][0],
        json!({
            "kind": "demand", "jurisdiction": "RU", "id": "ru-decryption-keys",
            "demand_kind": "encryption_backdoor", "legal_state": "in_force",
            "law": "Federal law requiring messaging services to provide decryption keys",
            "reference": "https://example.org/ru-decryption-keys-law",
            "effective": "2018-06-30T21:00:00Z", "response": "withdraw",
        })
    );
    let india = market(&r, "IN").unwrap();
    assert_eq!(india["status"], "limited");
    assert_eq!(india["disabled"], json!(["payments"]));
    assert_eq!(
        market(&r, "US-UT").unwrap()["disabled"],
        json!(["channels"])
    );
    // Served markets are not listed: the US, France (an EU demand it complies with),
    // and Great Britain (a shadow change is never applied).
    for code in ["US", "FR", "GB"] {
        assert!(market(&r, code).is_none(), "{code}: {r}");
    }
    // To come: the retention proposal (no date yet) first, then soonest first: Brazil's
    // staged payments launch, Great Britain's staged restriction of channels, the EU's
    // scanning proposal.
    let upcoming: Vec<&Value> = r["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["ground"])
        .collect();
    assert_eq!(upcoming.len(), 4, "{upcoming:?}");
    assert_eq!(upcoming[0]["id"], "eu-chat-retention-proposal");
    assert!(upcoming[0].get("effective").is_none(), "{}", upcoming[0]);
    let upcoming = &upcoming[1..];
    assert_eq!(
        *upcoming[0],
        json!({
            "kind": "change", "jurisdiction": "BR", "id": "br-payments-launch",
            "reference": "https://example.org/br-payments-licence",
            "effective": "2026-12-01T12:00:00Z", "features_on": ["payments"],
            "rollout_percent": 25.0,
            "text": "Payments launch after the payment institution licence",
        })
    );
    assert_eq!(upcoming[1]["id"], "gb-channels-age-checks-staged");
    assert_eq!(upcoming[1]["rollout_percent"], 10.0);
    assert_eq!(upcoming[2]["id"], "eu-csa-regulation");
    assert_eq!(upcoming[2]["legal_state"], "proposed");
    // A rejected bill and a law waiting for an order are not "to come".
    for u in upcoming {
        assert!(
            u["id"] != "fr-2025-messaging-backdoor" && u["id"] != "au-assistance-and-access",
            "{u}"
        );
    }
    let ids: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"urn:marketgate:transparency:RU:20180630T210000Z:withdrawn"),
        "{ids:?}"
    );

    let a = get(&s.url("/transparency.atom"), &[]);
    assert_eq!(
        a.header("content-type"),
        Some("application/atom+xml; charset=utf-8")
    );
    assert!(a.body.starts_with(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">"
    ));
    // Any other method: 405 in our JSON shape.
    let post = crate::server::post(&s.url("/transparency"), &[], "");
    assert_eq!(post.status, 405, "{}", post.body);
}

#[test]
fn overrides_show_their_public_reason_only_and_a_reload_changes_the_page() {
    let regions = copy_regions();
    let path = regions.path().to_path_buf();
    let s = TestServer::start(move |c| {
        c.regions = path;
        c.transparency_url = "https://example.com/why".into();
    });
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({
            "status": "withdrawn",
            "reason": "INTERNAL-TICKET-4711 per legal",
            "actor": "alice.operator",
            "public_reason": "A court order we are appealing",
        })),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    // A private demand: the status shows, the demand does not.
    std::fs::write(
        regions.path().join("cn.yaml"),
        "jurisdiction: CN\ndemands:\n  - id: cn-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2020-01-01T00:00:00Z\n    law: SECRET-LAW-TEXT\n    public: false\n",
    )
    .unwrap();
    let before = get(&s.url("/transparency.json"), &[]).json();
    assert!(
        market(&before, "CN").is_none(),
        "not reloaded yet: {before}"
    );
    let reload = s.admin("POST", "/admin/v1/reload", None);
    assert_eq!(reload.status, 200, "{}", reload.body);

    let r = get(&s.url("/transparency.json"), &[]).json();
    let cn = market(&r, "CN").expect("listed after the reload");
    assert_eq!(cn["status"], "withdrawn");
    assert_eq!(cn["grounds"], json!([]));
    let fr = market(&r, "FR").unwrap();
    // Every public demand in force on France's chain (the EU's, complied with), then
    // the override that withdrew it, with its public reason only.
    assert_eq!(fr["grounds"][0]["id"], "eu-court-orders");
    assert_eq!(fr["grounds"][0]["response"], "comply");
    assert_eq!(
        fr["grounds"][1],
        json!({"kind": "override", "jurisdiction": "FR", "text": "A court order we are appealing"})
    );
    assert_eq!(fr["since"], at().to_string());
    let texts = [
        get(&s.url("/transparency"), &[]).body,
        get(&s.url("/transparency.json"), &[]).body,
        get(&s.url("/transparency.atom"), &[]).body,
    ];
    for t in &texts {
        for secret in ["INTERNAL-TICKET-4711", "alice.operator", "SECRET-LAW-TEXT"] {
            assert!(!t.contains(secret), "{secret} in {t}");
        }
    }
    assert!(texts[0].contains("A court order we are appealing"));
    assert!(texts[0].contains("No public details."));
    // The feed links the page where it is hosted; so does every 451.
    assert!(
        texts[2].contains("href=\"https://example.com/why\""),
        "{}",
        texts[2]
    );
    let blocked = get(&s.url("/v1/gate"), &[("X-Forwarded-For", "194.67.1.1")]);
    assert_eq!(blocked.status, 451);
    assert_eq!(
        blocked.header("link"),
        Some("<https://example.com/why>; rel=\"blocked-by\"")
    );

    // Cleared: France is served again, and the page says so at once.
    let clear = s.admin("DELETE", "/admin/v1/overrides/FR", None);
    assert_eq!(clear.status, 200, "{}", clear.body);
    let r = get(&s.url("/transparency.json"), &[]).json();
    assert!(market(&r, "FR").is_none(), "{r}");
}

/// The Python of the venv `.ci/run` makes for these tests (feedparser, jsonschema),
/// or `None` with a loud message (a failure under `CI`).
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("MARKETGATE_TRANSPARENCY_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/marketgate-ci/transparency"))
        })?;
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import feedparser, jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        skip_or_fail(
            "transparency feed and schema",
            &format!("no feedparser and jsonschema in {}", venv.display()),
            "python3 -m venv ~/.cache/marketgate-ci/transparency && pip install feedparser==6.0.12 jsonschema==4.26.0",
        );
        None
    }
}

fn run_python(py: &Path, script: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const FEED_SCRIPT: &str = r#"
import json, sys, feedparser
d = feedparser.parse(sys.stdin.read())
if d.bozo:
    raise SystemExit("not well-formed: %r" % (d.bozo_exception,))
print(json.dumps({
    "version": d.version,
    "title": d.feed.title,
    "id": d.feed.id,
    "updated": d.feed.updated,
    "links": sorted(l.href for l in d.feed.links),
    "entries": [{"id": e.id, "title": e.title, "updated": e.updated,
                 "link": e.link, "summary": e.summary} for e in d.entries],
}))
"#;

#[test]
fn the_feed_parses_in_feedparser_with_stable_ids() {
    let Some(py) = python() else {
        return;
    };
    let regions = copy_regions();
    let path = regions.path().to_path_buf();
    let s = TestServer::start(move |c| c.regions = path);
    let parse = || {
        let atom = get(&s.url("/transparency.atom"), &[]).body;
        serde_json::from_str::<Value>(&run_python(&py, FEED_SCRIPT, &atom)).unwrap()
    };
    let feed = parse();
    assert_eq!(feed["version"], "atom10", "{feed}");
    assert_eq!(feed["id"], "urn:marketgate:transparency");
    let ru = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "urn:marketgate:transparency:RU:20180630T210000Z:withdrawn")
        .unwrap_or_else(|| panic!("{feed}"));
    assert_eq!(ru["title"], "Russia (RU): served to withdrawn");
    assert_eq!(ru["updated"], "2018-06-30T21:00:00Z");
    assert_eq!(ru["link"], "/transparency#RU-20180630T210000Z-withdrawn");
    assert!(
        ru["summary"]
            .as_str()
            .unwrap()
            .contains("https://example.org/ru-decryption-keys-law"),
        "{ru}"
    );
    // The newest change dates the feed, not the clock.
    assert_eq!(feed["updated"], feed["entries"][0]["updated"]);

    // A reload with a new withdrawal adds one entry; every other id stays.
    std::fs::write(
        regions.path().join("cn.yaml"),
        "jurisdiction: CN\nname: China\ndemands:\n  - id: cn-keys\n    kind: encryption_backdoor\n    state: enacted\n    effective: 2026-02-01T00:00:00Z\n    law: Key escrow rules\n",
    )
    .unwrap();
    assert_eq!(s.admin("POST", "/admin/v1/reload", None).status, 200);
    let after = parse();
    let ids = |f: &Value| -> Vec<String> {
        f["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (old, new) = (ids(&feed), ids(&after));
    assert_eq!(
        new[0],
        "urn:marketgate:transparency:CN:20260201T000000Z:withdrawn"
    );
    assert_eq!(&new[1..], &old[..]);
    assert_eq!(after["updated"], "2026-02-01T00:00:00Z");
}

const SCHEMA_SCRIPT: &str = r##"
import json, sys, jsonschema
doc = json.load(sys.stdin)
schema = {"$ref": "#/components/schemas/Report", "components": doc["openapi"]["components"]}
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
errors = [e.message + " at " + "/".join(map(str, e.absolute_path)) for e in v.iter_errors(doc["report"])]
bad = dict(doc["report"]); bad["markets"] = [{"jurisdiction": "RU"}]
print(json.dumps({"errors": errors, "bad_is_refused": not v.is_valid(bad)}))
"##;

#[test]
fn the_json_validates_against_its_schema_in_the_openapi_document() {
    let Some(py) = python() else {
        return;
    };
    let s = TestServer::start(|_| {});
    // An override too, so that every kind of ground is in the document.
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/FR",
        Some(json!({"status": "withdrawn", "reason": "x", "actor": "y", "ttl": "2h"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let openapi = get(&s.url("/openapi.json"), &[]).json();
    let op = &openapi["paths"]["/transparency.json"]["get"];
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Report",
        "{op}"
    );
    assert!(openapi["paths"]["/transparency"]["get"].is_object());
    assert!(openapi["paths"]["/transparency.atom"]["get"].is_object());
    let report = get(&s.url("/transparency.json"), &[]).json();
    let input = json!({"openapi": openapi, "report": report}).to_string();
    let out: Value = serde_json::from_str(&run_python(&py, SCHEMA_SCRIPT, &input)).unwrap();
    assert_eq!(out, json!({"errors": [], "bad_is_refused": true}));
}

fn marketgate(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn render_writes_the_served_page_json_and_feed_as_files() {
    let s = TestServer::start(|_| {});
    let out = tempfile::tempdir().unwrap();
    let o = marketgate(
        &[
            "transparency",
            "render",
            "--out",
            out.path().to_str().unwrap(),
            "--regions",
            repo().join("regions").to_str().unwrap(),
            "--at",
            &at().to_string(),
            "--page-url",
            "/transparency",
        ],
        &repo(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = |n: &str| std::fs::read_to_string(out.path().join(n)).unwrap();
    // The same bytes as served at the same instant, without overrides.
    assert_eq!(file("index.html"), get(&s.url("/transparency"), &[]).body);
    assert_eq!(
        file("transparency.json"),
        get(&s.url("/transparency.json"), &[]).body
    );
    assert_eq!(
        file("transparency.atom"),
        get(&s.url("/transparency.atom"), &[]).body
    );
    // Bad input: a missing directory is an error naming it.
    let o = marketgate(
        &[
            "transparency",
            "render",
            "--out",
            "x",
            "--regions",
            "/nonexistent",
        ],
        out.path(),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent is not a directory"));
}

/// A git repository whose `regions/` gets the global file on 2020-01-01 and RU's
/// withdrawal on 2024-03-01 (commit times).
fn rules_repository() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let git = |args: &[&str], date: &str| {
        let o = Command::new("git")
            .arg("-C")
            .arg(d)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    };
    git(&["init", "-q", "-b", "main"], "2020-01-01T00:00:00Z");
    std::fs::create_dir(d.join("regions")).unwrap();
    std::fs::copy(
        repo().join("regions/_global.yaml"),
        d.join("regions/_global.yaml"),
    )
    .unwrap();
    git(&["add", "."], "2020-01-01T00:00:00Z");
    git(&["commit", "-qm", "global"], "2020-01-01T00:00:00Z");
    // RU's demand dates from 2018, but these rules only said so from 2024.
    std::fs::copy(repo().join("regions/ru.yaml"), d.join("regions/ru.yaml")).unwrap();
    git(&["add", "."], "2024-03-01T12:00:00Z");
    git(&["commit", "-qm", "leave RU"], "2024-03-01T12:00:00Z");
    tmp
}

#[test]
fn serve_takes_the_history_from_git_with_transparency_git_base() {
    let repo_dir = rules_repository();
    let regions = repo_dir.path().join("regions");
    let s = TestServer::start(move |c| {
        c.regions = regions;
        c.transparency_git_base = Some("main~1".into());
    });
    // Read on a thread of its own after the load: the dates in the rules until then.
    let start = Instant::now();
    loop {
        let r = get(&s.url("/transparency.json"), &[]).json();
        let since = market(&r, "RU").unwrap()["since"].clone();
        if since == "2024-03-01T12:00:00Z" {
            assert_eq!(
                r["history"][0]["id"],
                "urn:marketgate:transparency:RU:20240301T120000Z:withdrawn"
            );
            break;
        }
        assert_eq!(since, "2018-06-30T21:00:00Z", "{r}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no git history: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn render_takes_the_history_from_git_when_asked() {
    let tmp = rules_repository();
    let d = tmp.path();
    let out = d.join("site");
    let o = marketgate(
        &[
            "transparency",
            "render",
            "--out",
            out.to_str().unwrap(),
            "--git-base",
            "HEAD~1",
            "--at",
            "2026-01-01T00:00:00Z",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transparency.json")).unwrap())
            .unwrap();
    assert_eq!(market(&r, "RU").unwrap()["since"], "2024-03-01T12:00:00Z");
    assert_eq!(
        r["history"][0]["id"],
        "urn:marketgate:transparency:RU:20240301T120000Z:withdrawn"
    );
    // Without git, the dates in the rules.
    let o = marketgate(
        &[
            "transparency",
            "render",
            "--out",
            out.to_str().unwrap(),
            "--at",
            "2026-01-01T00:00:00Z",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transparency.json")).unwrap())
            .unwrap();
    assert_eq!(market(&r, "RU").unwrap()["since"], "2018-06-30T21:00:00Z");
}

#[test]
fn a_browser_reads_the_page_without_script_errors_or_other_origins() {
    let Some((browser, driver_bin)) = chromium() else {
        return;
    };
    let s = TestServer::start(|_| {});
    let driver = Driver::start(&driver_bin);
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shot = artifact_dir().join("transparency.png");
    rt.block_on(drive(
        &driver.url,
        &browser,
        profile.path(),
        &s.url("/transparency"),
        &shot,
    ));
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}

async fn drive(driver: &str, browser: &Path, profile: &Path, page: &str, shot: &Path) {
    // A phone's viewport (CSS pixels) at its device pixel ratio.
    let c = session(
        driver,
        browser,
        profile,
        &["--window-size=390,844", "--force-device-scale-factor=2"],
    )
    .await;
    c.goto(page).await.unwrap();
    let eval = |script: &'static str| {
        let c = c.clone();
        async move { c.execute(script, vec![]).await.expect(script) }
    };
    let start = Instant::now();
    while eval("return document.readyState").await != "complete" {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The inline stylesheet applied (its CSP hash matches): the column is 48rem wide at
    // most, and nothing is wider than a phone's screen.
    assert_eq!(
        eval("return getComputedStyle(document.querySelector('main')).maxWidth").await,
        "768px"
    );
    assert_eq!(
        eval("return document.documentElement.scrollWidth <= window.innerWidth").await,
        true,
        "the page scrolls sideways on a phone"
    );
    assert_eq!(
        eval("return document.querySelector('#RU .status').textContent").await,
        "withdrawn"
    );
    // One landmark, headings in order, every link named.
    assert_eq!(
        eval("return document.querySelectorAll('main').length").await,
        1
    );
    assert_eq!(
        eval("return [...document.querySelectorAll('h1,h2')].map(h => h.tagName + ':' + h.textContent).join('|')").await,
        "H1:Transparency report|H2:Markets withdrawn or limited|H2:Demands and changes to come|H2:History"
    );
    assert_eq!(
        eval("return [...document.links].every(a => a.textContent.trim().length > 0)").await,
        true
    );
    // No script ran or was asked for, and every request went to this origin: the
    // document itself and nothing else.
    assert_eq!(eval("return document.scripts.length").await, 0);
    let resources = eval(
        "return performance.getEntries().filter(e => e.entryType === 'navigation' || e.entryType === 'resource').map(e => e.name).filter(n => !n.startsWith(location.origin + '/'))",
    )
    .await;
    assert_eq!(resources, json!([]), "requests off the origin");
    assert_eq!(
        eval("return performance.getEntriesByType('resource').length").await,
        0
    );
    // The browser's console: no error (a CSP refusal, a failed load) and no warning.
    let session = c.session_id().await.unwrap().expect("a session id");
    let logs = crate::server::post(
        &format!("{driver}/session/{session}/se/log"),
        &[("Content-Type", "application/json")],
        "{\"type\":\"browser\"}",
    );
    assert_eq!(logs.status, 200, "{}", logs.body);
    let entries: Vec<Value> = logs.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] != "INFO" && e["level"] != "DEBUG")
        .cloned()
        .collect();
    assert!(entries.is_empty(), "console: {entries:?}");

    let png = c.screenshot().await.unwrap();
    std::fs::write(shot, png).unwrap();
    c.close().await.unwrap();
}
