//! `deploy/observability/`: the alert rules (a rules file, and its `PrometheusRule` in
//! `deploy/k8s/monitoring/`), their
//! `promtool` unit tests, and the Grafana dashboard. Every metric, label and label value
//! the queries name is checked against what a running `marketgate serve` exports, so a
//! renamed metric fails here instead of leaving a panel empty or an alert silent; the
//! queries themselves are parsed by the real `promtool`. Also the HTTP answer metrics
//! those queries rely on: counted per handler and code, and the gate's blocking answers
//! by country.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::serve_binary::start;
use crate::server::{get, repo};
use crate::support::gateway::{binary, read};

fn dir() -> PathBuf {
    repo().join("deploy/observability")
}

fn yaml(file: &str) -> Yaml {
    serde_yaml::from_str(&read(&dir().join(file))).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn dashboard() -> Json {
    serde_json::from_str(&read(&dir().join("marketgate-dashboard.json")))
        .unwrap_or_else(|e| panic!("marketgate-dashboard.json: {e}"))
}

/// One metric family as `/metrics` exposes it: its type, and each label's values seen.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// The families of a Prometheus text exposition, by name.
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            out.entry(name.to_string()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).expect("a sample line");
        let sample = &line[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| sample.strip_suffix(s))
            .find(|base| out.get(*base).is_some_and(|f| f.kind == "histogram"))
            .unwrap_or(sample);
        let family = out
            .get_mut(name)
            .unwrap_or_else(|| panic!("a sample of no declared family: {line}"));
        if line[end..].starts_with('{') {
            let close = line.rfind('}').expect("labels end");
            for (k, _, v) in matchers(&line[end + 1..close]) {
                if k != "le" {
                    family.labels.entry(k).or_default().insert(v);
                }
            }
        }
    }
    out
}

/// `a="x", b!~"y"` as (label, operator, value).
fn matchers(inside: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = inside.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .expect("a matcher");
        let name = rest[..name_end].to_string();
        rest = rest[name_end..].trim_start();
        let op_end = rest.find('"').expect("a quoted value");
        let op = rest[..op_end].trim().to_string();
        rest = &rest[op_end + 1..];
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let close = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => value.push(chars.next().expect("an escape").1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        rest = rest[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        out.push((name, op, value));
    }
    out
}

/// Labels Prometheus itself attaches to every scraped series (the target's), and
/// labels a query may group by without any family having them.
const TARGET_LABELS: [&str; 3] = ["namespace", "job", "instance"];

/// A metric a query names, with the matchers written on it.
#[derive(Debug)]
struct Use {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// Every `marketgate_*` metric in `query` with its `{...}` matchers, and every label
/// the query groups or matches by (`by (...)`, `on (...)`, `ignoring (...)`).
fn uses(query: &str) -> (Vec<Use>, Vec<String>) {
    let mut metrics = Vec::new();
    let mut rest = query;
    while let Some(i) = rest.find("marketgate_") {
        let preceded = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if preceded {
            rest = &tail[end..];
            continue;
        }
        let name = tail[..end].to_string();
        let after = &tail[end..];
        let matchers = match after.strip_prefix('{') {
            Some(inner) => matchers(&inner[..inner.find('}').expect("matchers end")]),
            None => Vec::new(),
        };
        metrics.push(Use { name, matchers });
        rest = after;
    }
    let mut grouped = Vec::new();
    for keyword in ["by", "on", "ignoring", "without"] {
        let mut rest = query;
        while let Some(i) = rest.find(keyword) {
            let before_ok = rest[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            rest = &rest[i + keyword.len()..];
            let open = rest.trim_start();
            if before_ok && open.starts_with('(') {
                let inner = &open[1..open.find(')').expect("a closing parenthesis")];
                grouped.extend(
                    inner
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
        }
    }
    (metrics, grouped)
}

/// Checks one query (or a text naming metrics, such as an alert's description) against
/// the exported families; returns its problems. With `values`, an exact matcher's value
/// must be one the service exported too (not for the made-up series of promtool's
/// tests).
fn check_query(
    origin: &str,
    query: &str,
    exported: &BTreeMap<String, Family>,
    values: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let (metrics, grouped) = uses(query);
    let mut labels: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
    for u in &metrics {
        let histogram_part = ["_bucket", "_sum", "_count"].iter().find_map(|s| {
            let base = u.name.strip_suffix(s)?;
            exported.get(base).filter(|f| f.kind == "histogram")
        });
        let Some(family) = exported.get(&u.name).or(histogram_part) else {
            problems.push(format!("{origin}: `{}` is not exported", u.name));
            continue;
        };
        if family.kind == "histogram" && histogram_part.is_none() {
            problems.push(format!(
                "{origin}: `{}` is a histogram: query its _bucket, _sum or _count",
                u.name
            ));
        }
        labels.extend(family.labels.keys().map(String::as_str));
        if u.name.ends_with("_bucket") {
            labels.insert("le");
        }
        for (label, op, value) in &u.matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            match family.labels.get(label) {
                None => problems.push(format!(
                    "{origin}: `{}` has no label `{label}` (it has {:?})",
                    u.name,
                    family.labels.keys().collect::<Vec<_>>()
                )),
                // An exact value must be one the service exports (`code` values depend
                // on the traffic; the test sends the ones the queries name).
                Some(seen) if values && op == "=" && !seen.contains(value) => problems.push(format!(
                    "{origin}: `{}{{{label}=\"{value}\"}}` matches nothing exported (values: {seen:?})",
                    u.name
                )),
                Some(_) => {}
            }
        }
    }
    for g in grouped {
        if !labels.contains(g.as_str()) {
            problems.push(format!(
                "{origin}: groups by `{g}`, which none of its metrics has"
            ));
        }
    }
    problems
}

/// The alert rules as (alert name, every string of the rule: expression, labels,
/// annotations).
fn alert_texts(rules: &Yaml) -> Vec<(String, Vec<String>)> {
    fn strings(v: &Yaml, out: &mut Vec<String>) {
        match v {
            Yaml::String(s) => out.push(s.clone()),
            Yaml::Sequence(s) => s.iter().for_each(|v| strings(v, out)),
            Yaml::Mapping(m) => m.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .map(|r| {
            let mut texts = Vec::new();
            strings(r, &mut texts);
            (r["alert"].as_str().expect("an alert").to_string(), texts)
        })
        .collect()
}

/// Every query of the dashboard, with where it is: panel targets (PromQL) and the
/// template variables' queries (Grafana's `label_values(...)`, last).
fn dashboard_queries(d: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel `{}` {}", p["title"], t["refId"]),
                t["expr"].as_str().expect("an expr").to_string(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            out.push((
                format!("variable `{}`", v["name"]),
                v["query"]["query"].as_str().expect("a query").to_string(),
            ));
        }
    }
    out
}

/// Grafana's variables in a query, as values Prometheus accepts (for `promtool`).
fn as_promql(query: &str) -> String {
    query
        .replace("$__rate_interval", "5m")
        .replace("$job", ".+")
}

fn promtool() -> Option<PathBuf> {
    binary(
        "promtool",
        &["promtool"],
        "--version",
        "apt-get install prometheus (Debian's package ships promtool)",
    )
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd:?}:\n{out}");
    out
}

/// Serves the example rules and sends what makes every family appear, and every label
/// value the queries match exactly: a withdrawn market through the gate (451) and in
/// the nginx mode (403), a served one, an address with no GeoIP country, a shadow
/// change (GB's, in force since 2026), the decision API, readiness.
fn exported() -> BTreeMap<String, Family> {
    // Webhooks on (to a port nothing listens on: its counters exist from start).
    let s = start(&[
        "--trusted-proxy",
        "127.0.0.0/8",
        "--webhook-url",
        "http://127.0.0.1:9/marketgate",
        "--webhook-secret",
        "observability-webhook-secret",
    ]);
    let url = |p: &str| format!("http://{}{p}", s.addr);
    let ru = [("X-Forwarded-For", "194.67.1.1")];
    assert_eq!(get(&url("/v1/gate"), &ru).status, 451);
    assert_eq!(get(&url("/v1/gate?deny=403"), &ru).status, 403);
    assert_eq!(get(&url("/v1/gate/api/x"), &ru).status, 451);
    assert_eq!(
        get(&url("/v1/gate"), &[("X-Forwarded-For", "8.8.8.8")]).status,
        200
    );
    // No GeoIP country: the example rules serve `unknown`.
    assert_eq!(
        get(&url("/v1/gate"), &[("X-Forwarded-For", "10.9.8.7")]).status,
        200
    );
    let gb = get(&url("/v1/decision?country=GB"), &[]);
    assert_eq!(gb.status, 200, "{}", gb.body);
    assert_eq!(get(&url("/readyz"), &[]).status, 200);
    // A phone signal (RU) beside the address: the signals' counts.
    let ph = get(&url("/v1/decision?country=FR&phone=%2B79161234567"), &[]);
    assert_eq!(ph.json()["decided_by"], "phone", "{}", ph.body);
    assert_eq!(get(&url("/no/such/route"), &[]).status, 404);
    let text = get(&url("/metrics"), &[]).body;
    let exported = families(&text);

    // The HTTP answer metrics count what was sent, by handler and code: three blocking
    // gate answers from RU (two 451s and the 403 that stands for one), the gate's 200s.
    let sample = |s: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(s)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no `{s}` in\n{text}"))
    };
    assert_eq!(
        sample(r#"marketgate_gate_blocked_total{jurisdiction="RU"}"#),
        3.0
    );
    assert_eq!(
        sample(r#"marketgate_http_responses_total{code="451",handler="gate"}"#),
        2.0
    );
    assert_eq!(
        sample(r#"marketgate_http_responses_total{code="403",handler="gate"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"marketgate_http_responses_total{code="200",handler="gate"}"#),
        2.0
    );
    assert_eq!(
        sample(r#"marketgate_http_responses_total{code="404",handler="other"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"marketgate_http_request_duration_seconds_count{handler="gate"}"#),
        5.0
    );
    assert!(
        !text.contains("marketgate_gate_blocked_total{jurisdiction=\"US\"}"),
        "a 200 counted as blocked:\n{text}"
    );
    exported
}

#[test]
fn dashboard_and_alerts_name_only_what_serve_exports() {
    let exported = exported();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let rules = yaml("alerts.yaml");
    for (alert, texts) in alert_texts(&rules) {
        for t in texts {
            problems.extend(check_query(&format!("alert {alert}"), &t, &exported, true));
            used.extend(uses(&t).0.into_iter().map(|u| u.name));
        }
    }
    for (origin, q) in dashboard_queries(&dashboard()) {
        problems.extend(check_query(&origin, &q, &exported, true));
        used.extend(uses(&q).0.into_iter().map(|u| u.name));
    }
    // The promtool tests' input series are checked too: a test of a renamed metric
    // would pass against a name nothing exports.
    let tests = yaml("alerts.test.yaml");
    for t in tests["tests"].as_sequence().unwrap() {
        for series in t["input_series"].as_sequence().unwrap() {
            let s = series["series"].as_str().unwrap();
            problems.extend(check_query("alerts.test.yaml", s, &exported, false));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The checks above saw the metrics they are about (a parser that found nothing
    // would pass everything).
    for name in [
        "marketgate_decisions_total",
        "marketgate_http_request_duration_seconds_bucket",
        "marketgate_gate_blocked_total",
        "marketgate_http_responses_total",
        "marketgate_rules_reload_total",
        "marketgate_rules_reload_failing",
        "marketgate_geoip_build_timestamp_seconds",
        "marketgate_override_store_connected",
        "marketgate_shadow_divergence_total",
        "marketgate_log_lines_dropped_total",
    ] {
        assert!(used.contains(name), "nothing queries {name}: {used:?}");
    }
}

#[test]
fn the_drift_check_catches_a_renamed_metric_label_or_value() {
    let exported = families(
        "# HELP marketgate_x_total x\n# TYPE marketgate_x_total counter\nmarketgate_x_total{handler=\"gate\",code=\"200\"} 1\n\
         # HELP marketgate_h_seconds h\n# TYPE marketgate_h_seconds histogram\nmarketgate_h_seconds_bucket{le=\"1\"} 1\nmarketgate_h_seconds_sum 1\nmarketgate_h_seconds_count 1\n",
    );
    let check = |q: &str| check_query("q", q, &exported, true);
    assert!(
        check(r#"sum by (code, job) (rate(marketgate_x_total{handler="gate"}[5m]))"#).is_empty()
    );
    assert!(
        check("histogram_quantile(0.9, sum by (le) (rate(marketgate_h_seconds_bucket[5m])))")
            .is_empty()
    );
    for bad in [
        "rate(marketgate_y_total[5m])",
        r#"rate(marketgate_x_total{route="gate"}[5m])"#,
        r#"rate(marketgate_x_total{handler="gates"}[5m])"#,
        "sum by (route) (rate(marketgate_x_total[5m]))",
        "rate(marketgate_h_seconds[5m])",
        "rate(marketgate_x_total_bucket[5m])",
    ] {
        assert_eq!(check(bad).len(), 1, "{bad}: {:?}", check(bad));
    }
}

#[test]
fn prometheus_rule_carries_the_rules_file_and_promtool_passes_its_tests() {
    let rules = yaml("alerts.yaml");
    // The PrometheusRule lives with the other Operator resources (kustomize reads nothing
    // outside its directory).
    let crd: Yaml = serde_yaml::from_str(&read(
        &repo().join("deploy/k8s/monitoring/prometheusrule.yaml"),
    ))
    .unwrap();
    assert_eq!(crd["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(crd["kind"], "PrometheusRule");
    assert_eq!(
        crd["spec"], rules,
        "prometheusrule.yaml's spec differs from alerts.yaml"
    );
    let alerts: Vec<String> = alert_texts(&rules).into_iter().map(|(a, _)| a).collect();
    // The alerts the issue asks for, each with a promtool test.
    let tests = read(&dir().join("alerts.test.yaml"));
    for want in [
        "MarketgateRulesReloadFailing",
        "MarketgateGeoipDatabaseStale",
        "MarketgateOverrideStoreDisconnected",
        "MarketgateJurisdiction451ShareJump",
        "MarketgateServerErrors",
    ] {
        assert!(alerts.iter().any(|a| a == want), "no alert {want}");
    }
    for a in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {a}\n        exp_alerts:\n          - "
            )),
            "alerts.test.yaml never expects {a} to fire"
        );
    }
    for r in rules["groups"][0]["rules"].as_sequence().unwrap() {
        assert!(r["labels"]["severity"].is_string(), "{r:?}");
        assert!(r["annotations"]["summary"].is_string(), "{r:?}");
    }

    let Some(promtool) = promtool() else { return };
    let out = run(Command::new(&promtool)
        .args(["check", "rules", "alerts.yaml"])
        .current_dir(dir()));
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{out}"
    );
    let out = run(Command::new(&promtool)
        .args(["test", "rules", "alerts.test.yaml"])
        .current_dir(dir()));
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn dashboard_is_well_formed_and_promtool_parses_its_queries() {
    let d = dashboard();
    assert_eq!(d["uid"], "marketgate");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job"]);
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        titles.insert(p["title"].as_str().unwrap().to_string());
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("job=~\"$job\""), "{}: {expr}", p["title"]);
        }
    }
    // What the issue asks the dashboard to show.
    for want in [
        "Decisions by status",
        "Decisions by jurisdiction (top 15)",
        "Gate latency",
        "451 rate",
        "Rules reloads by result",
        "GeoIP database age",
        "Override store connected",
        "Shadow divergences",
        "Dropped log lines",
    ] {
        assert!(titles.contains(want), "no panel `{want}`: {titles:?}");
    }

    // Every query through promtool's parser, as a recording rule.
    let Some(promtool) = promtool() else { return };
    let rules: Vec<Yaml> = dashboard_queries(&d)
        .iter()
        .filter(|(origin, _)| origin.starts_with("panel"))
        .enumerate()
        .map(|(i, (_, q))| {
            serde_yaml::to_value(BTreeMap::from([
                ("record", format!("dashboard:query_{i}")),
                ("expr", as_promql(q)),
            ]))
            .unwrap()
        })
        .collect();
    let n = rules.len();
    let file = tempfile::NamedTempFile::new().unwrap();
    let doc = serde_yaml::to_string(&BTreeMap::from([(
        "groups",
        vec![BTreeMap::from([
            ("name", Yaml::from("dashboard")),
            ("rules", Yaml::Sequence(rules)),
        ])],
    )]))
    .unwrap();
    std::fs::write(file.path(), doc).unwrap();
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(file.path()));
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}
