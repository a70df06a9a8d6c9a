//! The ops console: what it serves with and without a token, the admin JSON it is
//! drawn from (the map at an instant, a jurisdiction explained), and a real headless
//! Chromium driven through chromedriver (WebDriver) that logs in, reads the map, sets an
//! override, meets a red line and logs out. The browser test skips loudly without
//! Chromium and fails instead when `CI` is set (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{agent, get, repo, TestServer, TOKEN};
use crate::support::marketgate;
use marketgate::server::Clock;

/// `regions/` plus a scheduled withdrawal of DE on 2027-03-01, in a temporary directory.
fn regions_with_scheduled_exit() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("regions")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(
        dir.path().join("de.yaml"),
        "jurisdiction: DE\nchanges:\n  - id: de-exit\n    at: 2027-03-01T00:00:00+01:00\n    status: withdrawn\n    reason: Law 123 requires an encryption backdoor\n    reference: https://example.org/law-123\n",
    )
    .unwrap();
    dir
}

fn row<'a>(table: &'a Value, code: &str) -> &'a Value {
    table["jurisdictions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["jurisdiction"] == code)
        .unwrap_or_else(|| panic!("no row {code}"))
}

#[test]
fn only_the_login_page_is_served_without_a_token() {
    let s = TestServer::start(|_| {});
    let page = get(&s.admin_url("/admin/"), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("id=\"login\""), "{}", page.body);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("http") && !csp.contains("unsafe"), "{csp}");
    // No data in the page: no rules version, no jurisdiction status.
    let version = s.state.rules().version().to_string();
    assert!(!page.body.contains(&version));
    assert!(!page.body.contains("ru-decryption-keys") && !page.body.contains("Russia"));

    // Everything else needs the token, and says so in the admin API's 401.
    for path in [
        "/admin/console/app.js",
        "/admin/console/world.json",
        "/admin/v1/rules",
        "/admin/v1/jurisdictions/RU",
    ] {
        let none = get(&s.admin_url(path), &[]);
        assert_eq!(none.status, 401, "{path}: {}", none.body);
        assert_eq!(none.json()["error"]["code"], "unauthorized", "{path}");
        let wrong = get(
            &s.admin_url(path),
            &[("Authorization", "Bearer not-the-token-0123456789")],
        );
        assert_eq!(wrong.status, 401, "{path}");
        assert_eq!(wrong.body, none.body, "{path}");
        let auth = format!("Bearer {TOKEN}");
        let ok = get(&s.admin_url(path), &[("Authorization", &auth)]);
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
    }
    let app = s.admin("GET", "/admin/console/app.js", None);
    assert!(app
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(app.header("cache-control"), Some("no-store"));
    let world = s.admin("GET", "/admin/console/world.json", None).json();
    let codes: Vec<&str> = world["countries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    for code in ["RU", "FR", "US", "BR", "IN", "XK"] {
        assert!(codes.contains(&code), "{code} missing from the map");
    }
    // `/admin` leads to the page; the public listener has no console.
    let to = agent()
        .get(s.admin_url("/admin"))
        .config()
        .max_redirects(0)
        .build()
        .call()
        .unwrap();
    assert_eq!(to.status(), 308);
    assert_eq!(to.headers()["location"], "/admin/");
    assert_eq!(get(&s.url("/admin/"), &[]).status, 404);
    assert_eq!(get(&s.url("/admin/console/app.js"), &[]).status, 404);
}

#[test]
fn the_map_state_is_computed_at_any_instant() {
    let regions = regions_with_scheduled_exit();
    let path = regions.path().to_path_buf();
    let s = TestServer::start(move |c| c.regions = path);
    let now = s.admin("GET", "/admin/v1/rules", None).json();
    assert_eq!(now["at"], "2026-11-29T00:00:00Z");
    assert_eq!(now["now"], "2026-11-29T00:00:00Z");
    assert_eq!(row(&now, "DE")["status"], "served");
    assert_eq!(row(&now, "RU")["status"], "withdrawn");
    assert_eq!(now["next_boundary"], "2026-12-01T12:00:00Z");
    assert_eq!(now["reload"]["trigger"], "startup");
    assert_eq!(now["reload"]["result"], "loaded");
    assert!(now["geoip"]["age_days"].as_i64().unwrap() >= 0);
    assert_eq!(now["geoip"]["last_reload"]["result"], "loaded");
    // Every shadow change is listed, counted or not.
    assert_eq!(
        now["shadow_changes"],
        json!([{"id": "gb-scanning-notice-exit", "jurisdiction": "GB", "at": "2026-01-01T00:00:00Z",
                "effect": "status withdrawn; shadow (measured, not applied)", "in_force": true, "origin": now["shadow_changes"][0]["origin"]}])
    );

    let later = s
        .admin("GET", "/admin/v1/rules?at=2027-04-01T00:00:00Z", None)
        .json();
    assert_eq!(later["at"], "2027-04-01T00:00:00Z");
    assert_eq!(later["now"], "2026-11-29T00:00:00Z");
    assert_eq!(row(&later, "DE")["status"], "withdrawn");
    assert_eq!(row(&later, "FR")["status"], "served");
    // Just before the instant, still served.
    let before = s
        .admin("GET", "/admin/v1/rules?at=2027-02-28T22:59:59Z", None)
        .json();
    assert_eq!(row(&before, "DE")["status"], "served");

    // A group's override shapes its members, and the row says which override did.
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/EU",
        Some(json!({"features": {"channels": false}, "reason": "incident 12"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let t = s.admin("GET", "/admin/v1/rules", None).json();
    assert_eq!(row(&t, "FR")["status"], "limited");
    assert_eq!(row(&t, "FR")["overridden_by"], "EU");
    assert!(row(&t, "FR").get("override").is_none());
    assert_eq!(row(&t, "EU")["override"]["reason"], "incident 12");
    assert!(row(&t, "US").get("overridden_by").is_none());

    for bad in ["tomorrow", "2027-01-01T00:00:00", "2027-13-01T00:00:00Z"] {
        let a = s.admin("GET", &format!("/admin/v1/rules?at={bad}"), None);
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert_eq!(a.json()["error"]["code"], "invalid_instant", "{bad}");
    }

    // The last reload is reported with its trigger and result.
    let r = s.admin("POST", "/admin/v1/reload", None);
    assert_eq!(r.status, 200, "{}", r.body);
    std::fs::write(
        regions.path().join("zz.yaml"),
        "jurisdiction: FR\nstatus: sideways\n",
    )
    .unwrap();
    let r = s.admin("POST", "/admin/v1/reload", None);
    assert_eq!(r.status, 422, "{}", r.body);
    let t = s.admin("GET", "/admin/v1/rules", None).json();
    assert_eq!(t["reload"]["trigger"], "admin");
    assert_eq!(t["reload"]["result"], "failed");
    assert_eq!(t["reload"]["version"], now["version"]);
    let errors = t["reload"]["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("zz.yaml:2:")),
        "{errors:?}"
    );
}

#[test]
fn a_jurisdiction_is_explained_with_the_cli_trail_demands_and_upcoming_changes() {
    let regions = regions_with_scheduled_exit();
    let path = regions.path().to_path_buf();
    let s = TestServer::start(move |c| c.regions = path);

    let ru = s.admin("GET", "/admin/v1/jurisdictions/RU", None);
    assert_eq!(ru.status, 200, "{}", ru.body);
    let ru = ru.json();
    assert_eq!(ru["name"], "Russian Federation");
    assert_eq!(ru["decision"]["status"], "withdrawn");
    assert_eq!(ru["chain"], json!(["RU", "*"]));
    let red: Vec<&Value> = ru["demands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["in_force"] == true)
        .collect();
    assert_eq!(red.len(), 1, "{red:?}");
    assert_eq!(red[0]["id"], "ru-decryption-keys");
    assert_eq!(red[0]["red_line"], true);
    assert_eq!(red[0]["response"], "withdraw (red line)");
    // The same trail `marketgate explain` prints, for the same rules and instant.
    let cli = marketgate(&[
        "explain",
        "--regions",
        regions.path().to_str().unwrap(),
        "--country",
        "RU",
        "--at",
        "2026-11-29T00:00:00Z",
    ]);
    assert!(cli.status.success());
    assert_eq!(
        ru["explanation"].as_str().unwrap(),
        String::from_utf8_lossy(&cli.stdout)
    );

    // DE: the scheduled exit is upcoming, with DE's own transition.
    let de = s.admin("GET", "/admin/v1/jurisdictions/DE", None).json();
    assert_eq!(de["chain"], json!(["DE", "EU", "EEA", "*"]));
    let up = de["upcoming"].as_array().unwrap();
    let exit = up.iter().find(|e| e["id"] == "de-exit").expect("de-exit");
    assert_eq!(exit["at"], "2027-02-28T23:00:00Z");
    assert_eq!(
        exit["transitions"],
        json!([{"jurisdiction": "DE", "before": "served", "after": "withdrawn"}])
    );
    // The EU's proposed scanning law is on DE's chain too, and not in force.
    let csa = up
        .iter()
        .find(|e| e["id"] == "eu-csa-regulation")
        .expect("eu-csa-regulation");
    assert_eq!(csa["applies"], false);
    assert_eq!(csa["red_line"], true);
    let eu_demand = de["demands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "eu-csa-regulation")
        .unwrap();
    assert_eq!(eu_demand["in_force"], false);
    assert_eq!(eu_demand["state"], "proposed");
    assert_eq!(eu_demand["jurisdiction"], "EU");
    // At the future instant, the exit has happened and is no longer upcoming.
    let de_later = s
        .admin(
            "GET",
            "/admin/v1/jurisdictions/DE?at=2027-04-01T00:00:00Z",
            None,
        )
        .json();
    assert_eq!(de_later["decision"]["status"], "withdrawn");
    assert!(de_later["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["id"] != "de-exit"));

    // An override shows on its jurisdiction and on the members of its group.
    let set = s.admin(
        "PUT",
        "/admin/v1/overrides/EU",
        Some(json!({"features": {"channels": false}, "reason": "incident 12", "actor": "alice"})),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let eu = s.admin("GET", "/admin/v1/jurisdictions/EU", None).json();
    assert!(eu.get("decision").is_none());
    assert_eq!(eu["name"], "European Union");
    assert_eq!(eu["override"]["actor"], "alice");
    let fr = s.admin("GET", "/admin/v1/jurisdictions/fr", None).json();
    assert_eq!(fr["jurisdiction"], "FR");
    assert_eq!(fr["decision"]["status"], "limited");
    assert_eq!(fr["chain_overrides"][0]["jurisdiction"], "EU");
    assert!(fr["explanation"]
        .as_str()
        .unwrap()
        .contains("override on EU by alice: incident 12"));

    // Both endpoints are documented with their `at` parameter.
    let doc = s.admin("GET", "/admin/v1/openapi.json", None).json();
    for path in ["/admin/v1/rules", "/admin/v1/jurisdictions/{jurisdiction}"] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        assert!(
            params.iter().any(|p| p["name"] == "at"),
            "{path}: {params:?}"
        );
    }

    for bad in ["XX", "US-ZZ", "not a code", "NOPE"] {
        let a = s.admin(
            "GET",
            &format!("/admin/v1/jurisdictions/{}", bad.replace(' ', "%20")),
            None,
        );
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert!(a.json()["error"]["code"].is_string(), "{bad}");
    }
    let a = s.admin("GET", "/admin/v1/jurisdictions/RU?at=soon", None);
    assert_eq!(a.status, 400, "{}", a.body);
}

// ---------------------------------------------------------------------------------
// A real browser.

/// Chromium and chromedriver, or `None` (with a loud message) when missing locally.
pub(crate) fn chromium() -> Option<(PathBuf, PathBuf)> {
    // Absolute paths: chromedriver wants the browser's.
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        names.iter().find_map(|n| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(n))
                .find(|p| p.is_file())
        })
    };
    let browser = find(&["chromium", "chromium-browser"]);
    let driver = find(&["chromedriver"]);
    if let (Some(b), Some(d)) = (&browser, &driver) {
        return Some((b.clone(), d.clone()));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium and chromium-driver are required in CI (.ci/run installs them)"
    );
    eprintln!(
        "\n!!!!!! SKIPPED the console browser test: apt-get install chromium chromium-driver !!!!!!\n"
    );
    None
}

/// A chromedriver on a free port, stopped on drop.
pub(crate) struct Driver {
    child: Child,
    pub(crate) url: String,
}

impl Driver {
    pub(crate) fn start(bin: &Path) -> Driver {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(bin)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let port = loop {
            let line = lines.next().expect("chromedriver said which port").unwrap();
            if let Some(p) = line
                .split("started successfully on port ")
                .nth(1)
                .map(|p| p.trim_end_matches('.').trim().to_string())
            {
                break p;
            }
        };
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the test leaves its screenshot.
pub(crate) fn artifact_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

#[test]
fn a_browser_logs_in_reads_the_map_sets_an_override_meets_a_red_line_and_logs_out() {
    let Some((browser, driver_bin)) = chromium() else {
        return;
    };
    let regions = regions_with_scheduled_exit();
    let path = regions.path().to_path_buf();
    // The system clock: the override below has a ttl, which the store expires by it.
    let s = TestServer::start_with_clock(Clock::System, move |c| c.regions = path);
    let driver = Driver::start(&driver_bin);
    let profile = tempfile::tempdir().unwrap();
    let console = s.admin_url("/admin/");
    let shot = artifact_dir().join("console-e2e.png");

    // One GB decision: its shadow change would have withdrawn it, and is counted.
    assert_eq!(get(&s.url("/v1/decision?country=GB"), &[]).status, 200);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(drive(
        &driver.url,
        &browser,
        profile.path(),
        &console,
        &shot,
    ));

    // What the browser did reached the service: the override and its audit entry.
    let list = s.admin("GET", "/admin/v1/overrides", None).json();
    assert_eq!(list["overrides"].as_array().unwrap().len(), 0, "{list}");
    let audit = s.admin("GET", "/admin/v1/audit", None).json();
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["jurisdiction"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions, [("clear", "FR"), ("set", "FR")], "{audit}");
    assert_eq!(audit["entries"][1]["reason"], "court order 2026-114");
    assert_eq!(audit["entries"][1]["actor"], "e2e");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}

/// A headless Chromium session through `driver` with its profile in `profile`, its
/// console messages kept (`goog:loggingPrefs`), and `args` added (the window size).
pub async fn session(
    driver: &str,
    browser: &Path,
    profile: &Path,
    args: &[&str],
) -> fantoccini::Client {
    let mut all = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": browser, "args": all}),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a chromium session")
}

async fn drive(driver: &str, browser: &Path, profile: &Path, console: &str, shot: &Path) {
    use fantoccini::Locator;

    let c = session(driver, browser, profile, &["--window-size=1440,1000"]).await;
    // Generous: the whole suite runs in parallel on small CI machines.
    let wait = Duration::from_secs(30);
    let css = Locator::Css;
    let eval = |script: &'static str| {
        let c = c.clone();
        async move { c.execute(script, vec![]).await.expect(script) }
    };
    // Polls a script until it returns `true`.
    let until = |script: &'static str| {
        let c = c.clone();
        async move {
            let start = Instant::now();
            loop {
                let v = c.execute(script, vec![]).await.expect(script);
                if v == Value::Bool(true) {
                    return;
                }
                assert!(start.elapsed() < wait, "timed out waiting for: {script}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // One element by CSS selector: click it, type into it, or choose one of its options.
    let press = |sel: &'static str| {
        let c = c.clone();
        async move { c.find(css(sel)).await.expect(sel).click().await.expect(sel) }
    };
    let type_in = |sel: &'static str, text: &'static str| {
        let c = c.clone();
        async move {
            let e = c.find(css(sel)).await.expect(sel);
            e.send_keys(text).await.expect(sel)
        }
    };
    let choose = |sel: &'static str, value: &'static str| {
        let c = c.clone();
        async move {
            let e = c.find(css(sel)).await.expect(sel);
            e.select_by_value(value).await.expect(sel)
        }
    };

    // 1. The login page; a wrong token is refused, the right one opens the console.
    c.goto(console).await.unwrap();
    let token = c
        .wait()
        .at_most(wait)
        .for_element(css("#token"))
        .await
        .unwrap();
    token.send_keys("not-the-token-0123456789").await.unwrap();
    press("#sign-in").await;
    until("return document.getElementById('login-error').textContent.includes('not accepted')")
        .await;
    assert!(c.find(css("#app[data-ready]")).await.is_err());
    let token = c.find(css("#token")).await.unwrap();
    token.clear().await.unwrap();
    token.send_keys(TOKEN).await.unwrap();
    press("#sign-in").await;
    c.wait()
        .at_most(wait)
        .for_element(css("#app[data-ready]"))
        .await
        .expect("the console loads");
    // The token is kept for this tab's session only.
    assert_eq!(
        eval("return [sessionStorage.length, localStorage.length, document.cookie]").await,
        json!([1, 0, ""])
    );

    // Every request the page made went to marketgate itself.
    assert_eq!(
        eval("var r = performance.getEntriesByType('resource'); return [r.length >= 5, r.filter(function (e) { return e.name.indexOf(location.origin + '/admin/') !== 0; }).map(function (e) { return e.name; })]").await,
        json!([true, []])
    );

    // 2. A withdrawn country is drawn as withdrawn; an untouched one as served.
    let ru = c
        .find(css("#countries path[data-code='RU']"))
        .await
        .unwrap();
    assert_eq!(
        ru.attr("data-status").await.unwrap().as_deref(),
        Some("withdrawn")
    );
    assert!(ru
        .attr("class")
        .await
        .unwrap()
        .unwrap()
        .contains("st-withdrawn"));
    let fill = eval(
        "return getComputedStyle(document.querySelector(\"#countries path[data-code='RU']\")).fill",
    )
    .await;
    assert!(fill.as_str().unwrap().contains("pat-withdrawn"), "{fill}");
    let fr = c
        .find(css("#countries path[data-code='FR']"))
        .await
        .unwrap();
    assert_eq!(
        fr.attr("data-status").await.unwrap().as_deref(),
        Some("served")
    );
    assert_eq!(
        eval("return document.querySelector(\"#countries path[data-code='IN']\").getAttribute('data-status')").await,
        "limited"
    );
    // Hover shows the jurisdiction, its status and disabled features; a click on the
    // map opens the jurisdiction.
    press("#countries path[data-code='IN']").await;
    let tip = c.find(css("#tooltip")).await.unwrap().text().await.unwrap();
    assert!(
        tip.contains("India (IN)") && tip.contains("limited") && tip.contains("payments"),
        "{tip}"
    );
    until("var h = document.getElementById('detail-title'); return !!h && h.textContent.includes('(IN)')").await;
    // The panel explains a request from IN that also carries a phone number: each
    // signal's jurisdiction and status, and the Russian number decides.
    type_in("#signal-phone", "+79161234567").await;
    press("#signals-explain").await;
    until("var u = document.getElementById('detail-signals'); return !!u && u.textContent.includes('phone: RU') && u.querySelector('[data-kind=phone] strong') !== null && u.textContent.includes('address: IN')").await;
    until("var h = document.getElementById('detail-explain'); return !!h && h.textContent.includes('← decides')").await;
    press("#signals-clear").await;
    until("return document.getElementById('detail-signals') === null && document.getElementById('signal-phone').value === ''").await;

    // The shadow panel lists the GB change; its count is the service's counter.
    let gb = c
        .find(css(
            "#shadow-table tr[data-change='gb-scanning-notice-exit']",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        gb.contains("GB")
            && gb.contains("status withdrawn")
            && gb.contains("served → withdrawn: 1"),
        "{gb}"
    );

    // The keyboard: the map is one tab stop; arrows move between countries, Enter opens.
    eval("document.querySelector('#countries path[tabindex=\"0\"]').focus(); return true").await;
    let first = eval("return document.activeElement.getAttribute('data-code')").await;
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E014}")
        .await
        .unwrap();
    let second = eval("return document.activeElement.getAttribute('data-code')").await;
    assert!(second.is_string() && second != first, "{first} → {second}");
    assert_eq!(
        eval("return document.querySelectorAll('#countries [tabindex=\"0\"]').length").await,
        1
    );
    let tip = c.find(css("#tooltip")).await.unwrap().text().await.unwrap();
    assert!(tip.contains(second.as_str().unwrap()), "{tip}");
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    until("var h = document.getElementById('detail-title'); return !!h && h.textContent.includes('(' + document.activeElement.getAttribute('data-code') + ')')").await;

    // 3. The explanation of RU: the trail, the red line in force.
    type_in("#find", "RU\u{E007}").await;
    until("var h = document.getElementById('detail-title'); return !!h && h.textContent.includes('(RU)')").await;
    let explain = c
        .find(css("#detail-explain"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        explain.contains("demand ru-decryption-keys on RU"),
        "{explain}"
    );
    assert!(explain.contains("a red line"), "{explain}");
    let demands = c
        .find(css("#detail-demands"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        demands.contains("ru-decryption-keys") && demands.contains("red line"),
        "{demands}"
    );

    // 4. A red line refuses an override that would serve RU: the 409 is shown.
    choose("#of-status", "served").await;
    type_in("#of-reason", "try to restore").await;
    press("#of-submit").await;
    let refusal = c
        .wait()
        .at_most(wait)
        .for_element(css("#refusal"))
        .await
        .unwrap();
    assert_eq!(
        refusal.attr("data-code").await.unwrap().as_deref(),
        Some("red_line")
    );
    let text = refusal.text().await.unwrap();
    assert!(
        text.contains("red line") && text.contains("ru-decryption-keys"),
        "{text}"
    );
    assert_eq!(
        ru.attr("data-status").await.unwrap().as_deref(),
        Some("withdrawn")
    );

    // 5. An override withdraws FR: the map changes without a page reload.
    eval("window.__samePage = true; return true").await;
    let find = c.find(css("#find")).await.unwrap();
    find.clear().await.unwrap();
    find.send_keys("FR\u{E007}").await.unwrap();
    until("var h = document.getElementById('detail-title'); return !!h && h.textContent.includes('(FR)')").await;
    choose("#of-status", "withdrawn").await;
    type_in("#of-reason", "court order 2026-114").await;
    type_in("#of-public-reason", "unavailable here for now").await;
    choose("#of-expiry", "2h").await;
    type_in("#of-actor", "e2e").await;
    press("#of-submit").await;
    c.wait()
        .at_most(wait)
        .for_element(css("#change-notice"))
        .await
        .unwrap();
    let fr = c
        .find(css("#countries path[data-code='FR']"))
        .await
        .unwrap();
    assert_eq!(
        fr.attr("data-status").await.unwrap().as_deref(),
        Some("withdrawn")
    );
    assert_eq!(
        fr.attr("data-overridden").await.unwrap().as_deref(),
        Some("FR")
    );
    assert!(c
        .find(css("#overlay [data-code-overlay='FR']"))
        .await
        .is_ok());
    assert_eq!(eval("return window.__samePage === true").await, true);
    let panel = c
        .find(css("#overrides-table"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        panel.contains("FR")
            && panel.contains("court order 2026-114")
            && panel.contains("unavailable here for now")
            && panel.contains("left"),
        "{panel}"
    );
    until("return document.getElementById('audit-table') !== null && document.getElementById('audit-table').textContent.includes('court order 2026-114')").await;
    eval("window.scrollTo(0, 0); document.getElementById('detail').scrollTop = 0; return true")
        .await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(shot, png).unwrap();

    // 6. The map at a future instant: DE's scheduled exit.
    let de = "return document.querySelector(\"#countries path[data-code='DE']\").getAttribute('data-status')";
    assert_eq!(eval(de).await, "served");
    eval("var d = document.getElementById('when-date'); d.value = '2027-04-01T12:00'; d.dispatchEvent(new Event('change')); return true").await;
    until("return document.getElementById('map').getAttribute('data-at').startsWith('2027-04-01') && document.getElementById('detail').getAttribute('data-at').startsWith('2027-04-01')").await;
    assert_eq!(eval(de).await, "withdrawn");
    // The override (2 h) has expired by then; FR is served again in that future.
    assert_eq!(
        eval("return document.querySelector(\"#countries path[data-code='FR']\").getAttribute('data-status')").await,
        "served"
    );
    press("#when-now").await;
    until("return !document.getElementById('map').getAttribute('data-at').startsWith('2027')")
        .await;
    assert_eq!(eval(de).await, "served");

    // 7. Clear the override from the panel; then log out: the token is forgotten.
    c.wait()
        .at_most(wait)
        .for_element(css("#of-clear"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("return document.querySelector(\"#countries path[data-code='FR']\").getAttribute('data-status') === 'served'").await;
    press("#logout").await;
    until("return !document.getElementById('login-view').hidden && document.getElementById('app').hidden").await;
    assert_eq!(eval("return sessionStorage.length").await, 0);
    // A reload shows the login page, not the console.
    c.refresh().await.unwrap();
    c.wait()
        .at_most(wait)
        .for_element(css("#token"))
        .await
        .unwrap();
    assert!(c.find(css("#app[data-ready]")).await.is_err());
    c.close().await.unwrap();
}

#[test]
fn roles_shape_the_console_and_a_proposal_needs_a_second_approver() {
    use crate::approvals::{approvals, BOB, CAROL, VIEWER};
    let Some((browser, driver_bin)) = chromium() else {
        return;
    };
    let s = TestServer::start_with_clock(Clock::System, approvals);
    let driver = Driver::start(&driver_bin);
    let profile = tempfile::tempdir().unwrap();
    let console = s.admin_url("/admin/");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(drive_approvals(
        &driver.url,
        &browser,
        profile.path(),
        &console,
        [VIEWER, BOB, CAROL],
    ));
    // What the browsers did reached the service: a break-glass withdrawal of DE, its
    // clearing proposed by Bob, refused to Bob, approved by Carol and applied.
    let list = s.admin("GET", "/admin/v1/overrides", None).json();
    assert_eq!(list["overrides"], json!([]), "{list}");
    let audit = s.admin("GET", "/admin/v1/audit", None).json();
    let acts: Vec<(&str, &str, bool)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["break_glass"] == true,
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            ("clear", "bob", false),
            ("approve", "carol", false),
            ("propose", "bob", false),
            ("set", "bob", true)
        ],
        "{audit}"
    );
}

async fn drive_approvals(
    driver: &str,
    browser: &Path,
    profile: &Path,
    console: &str,
    [viewer, bob, carol]: [&str; 3],
) {
    use fantoccini::Locator;
    let c = session(driver, browser, profile, &["--window-size=1440,1000"]).await;
    let wait = Duration::from_secs(30);
    let css = Locator::Css;
    let until = |script: String| {
        let c = c.clone();
        async move {
            let start = Instant::now();
            loop {
                let v = c.execute(&script, vec![]).await.expect(&script);
                if v == Value::Bool(true) {
                    return;
                }
                assert!(start.elapsed() < wait, "timed out waiting for: {script}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let eval = |script: &'static str| {
        let c = c.clone();
        async move { c.execute(script, vec![]).await.expect(script) }
    };
    let press = |sel: String| {
        let c = c.clone();
        async move {
            c.wait()
                .at_most(wait)
                .for_element(Locator::Css(&sel))
                .await
                .expect(&sel)
                .click()
                .await
                .expect(&sel)
        }
    };
    let type_in = |sel: &'static str, text: &'static str| {
        let c = c.clone();
        async move {
            let e = c.find(css(sel)).await.expect(sel);
            e.clear().await.expect(sel);
            e.send_keys(text).await.expect(sel)
        }
    };
    let sign_in = |token: &str| {
        let (c, token, console) = (c.clone(), token.to_string(), console.to_string());
        async move {
            c.goto(&console).await.unwrap();
            let input = c
                .wait()
                .at_most(wait)
                .for_element(css("#token"))
                .await
                .unwrap();
            input.send_keys(&token).await.unwrap();
            c.find(css("#sign-in"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            c.wait()
                .at_most(wait)
                .for_element(css("#app[data-ready]"))
                .await
                .expect("the console loads");
        }
    };
    let open = |code: &'static str| {
        let c = c.clone();

        async move {
            let find = c.find(css("#find")).await.unwrap();
            find.clear().await.unwrap();
            find.send_keys(&format!("{code}\u{E007}")).await.unwrap();
            until(format!("var h = document.getElementById('detail-title'); return !!h && h.textContent.includes('({code})')")).await;
        }
    };
    let sign_out = || {
        let c = c.clone();
        async move {
            c.find(css("#logout")).await.unwrap().click().await.unwrap();
            c.refresh().await.unwrap();
        }
    };
    // 1. A viewer reads everything and is offered no button that changes anything.
    sign_in(viewer).await;
    assert_eq!(
        eval("return [document.getElementById('app').getAttribute('data-role'), document.getElementById('whoami').textContent]").await,
        json!(["viewer", "auditor · viewer"])
    );
    open("FR").await;
    assert_eq!(
        eval("return [!!document.getElementById('override-form'), !!document.getElementById('read-only'), !!document.getElementById('reload'), document.querySelectorAll('#proposals [data-act]').length]").await,
        json!([false, true, false, 0])
    );
    sign_out().await;

    // 2. Bob breaks glass to withdraw DE (it only narrows): applied, flagged in the audit.
    sign_in(bob).await;
    open("DE").await;
    assert_eq!(
        eval("return !!document.getElementById('of-policy') && !!document.getElementById('of-break-glass')").await,
        true
    );
    c.find(css("#of-status"))
        .await
        .unwrap()
        .select_by_value("withdrawn")
        .await
        .unwrap();
    type_in("#of-reason", "incident 21").await;
    press("#of-break-glass".into()).await;
    press("#of-submit".into()).await;
    until("var n = document.getElementById('change-notice'); return !!n && n.textContent.includes('Override set')".into()).await;
    until("var r = document.querySelector('#audit-table tbody tr'); return !!r && r.classList.contains('break-glass') && !!r.querySelector('.badge.break-glass')".into()).await;

    // 3. Clearing it widens: Bob proposes it, and may not approve his own proposal.
    type_in("#of-reason", "incident over").await;
    press("#of-clear".into()).await;
    until("var r = document.getElementById('refusal'); return !!r && r.getAttribute('data-code') === 'approval_required'".into()).await;
    press("#of-propose-clear".into()).await;
    until("var n = document.getElementById('change-notice'); return !!n && n.textContent.includes('Proposed')".into()).await;
    until("return !!document.querySelector(\"#proposals-table tr[data-code='DE'] [data-act=approve]\")".into()).await;
    press("#proposals-table tr[data-code='DE'] [data-act=approve]".into()).await;
    until("var r = document.querySelector('#proposal-message #refusal'); return !!r && r.getAttribute('data-code') === 'self_approval' && r.textContent.includes('another approver')".into()).await;
    assert_eq!(
        eval("return document.querySelector(\"#countries path[data-code='DE']\").getAttribute('data-status')").await,
        "withdrawn"
    );
    sign_out().await;

    // 4. Carol approves: the clear applies, DE is served again on the map.
    sign_in(carol).await;
    until("var r = document.querySelector(\"#proposals-table tr[data-code='DE']\"); return !!r && r.textContent.includes('bob') && r.textContent.includes('0 of 1')".into()).await;
    press("#proposals-table tr[data-code='DE'] [data-act=approve]".into()).await;
    until("var n = document.getElementById('proposal-notice'); return !!n && n.textContent.includes('applied')".into()).await;
    until("return document.querySelector(\"#countries path[data-code='DE']\").getAttribute('data-status') === 'served' && document.querySelector('#proposals-table tbody tr') === null".into()).await;
    c.close().await.unwrap();
}
