//! The deployment files in `deploy/`, checked by the programs that will read them in
//! production: `promtool` (rules, rule unit tests, Prometheus config), `amtool` (the
//! Alertmanager config and where each alert is routed), the blackbox exporter's own config
//! check, `systemd-analyze` (the unit and its sandbox), the relay's `check-config` (the
//! systemd and Kubernetes configurations with their secret files), and a YAML parser for
//! the Kubernetes manifests. The tests also check that the files agree with each other
//! and with the relay: label names, the Watchdog, actor ids, ports, paths and secrets.
//!
//! The tools come from Debian packages that `scripts/test-all.sh` installs: `prometheus`
//! (promtool), `prometheus-alertmanager` (amtool), `prometheus-blackbox-exporter`,
//! `systemd` (systemd-analyze) and `python3-yaml` (the YAML parser). Docker cannot run in
//! the test environment, so the Dockerfile is only checked for its structure.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use samsa_relay::config::parse_duration;

// The tests that run the deployment's own tools (system tier).
#[cfg(feature = "system-tests")]
use {
    crate::common::debian_binary, samsa_relay::config::IncidentsConfig,
    samsa_relay::inventory::Inventory, serde_json::Value, std::collections::BTreeMap,
};

const RELAY_BINARY: &str = env!("CARGO_BIN_EXE_samsa-relay");

/// How long one tool run may take before the test kills it and fails.
const TOOL_DEADLINE: Duration = Duration::from_secs(60);

/// The systemd unit's credentials folder, as the systemd config's `*_file` keys name it.
const SYSTEMD_CREDENTIALS: &str = "/run/credentials/samsa-relay.service/";
/// Where the Kubernetes Deployment mounts the Secret.
#[cfg(feature = "system-tests")]
const KUBERNETES_SECRETS: &str = "/run/secrets/samsa-relay/";
/// The configuration folder in both deployments.
const CONFIG_FOLDER: &str = "/etc/samsa-relay/";
/// The state folder in both deployments (systemd's StateDirectory, the Kubernetes PVC).
const STATE_FOLDER: &str = "/var/lib/samsa-relay/";
/// The outage alerts of samsa-rules.yml, the only ones besides the Watchdog that may reach
/// the relay: it reads every alert it receives as part of a SAMSA outage.
#[cfg(feature = "system-tests")]
const ALERTS_FOR_THE_RELAY: &[&str] = &["SamsaLoginDown", "SamsaDown"];
/// Metrics the rules use that the relay does not expose yet. Until it does, the rules on
/// them stay silent (no series, no alert).
#[cfg(feature = "system-tests")]
const FORTHCOMING_METRICS: &[&str] = &[
    // Gauge: outbox rows not yet delivered (any label set; the rules sum it).
    "samsa_relay_outbox_pending",
    // Gauge: age in seconds of the oldest undelivered outbox row, 0 when empty.
    "samsa_relay_outbox_oldest_pending_age_seconds",
];
/// The rule files in deploy/prometheus/ and their promtool unit tests: the rules of every
/// deployment, and those only for several replicas over PostgreSQL.
#[cfg(feature = "system-tests")]
const RULE_FILES: &[(&str, &str)] = &[
    ("samsa-rules.yml", "samsa-rules.test.yml"),
    ("samsa-relay-ha-rules.yml", "samsa-relay-ha-rules.test.yml"),
];
/// The job name the relay's rules match on.
#[cfg(feature = "system-tests")]
const RELAY_JOB: &str = "samsa-relay";

/// The drop-in that turns the systemd unit into one host of several.
const SYSTEMD_HA_DROP_IN: &str = "systemd/ha/samsa-relay.service.d/postgresql.conf";
/// The variable that sets cluster.replica_name.
const REPLICA_NAME_VARIABLE: &str = "SAMSA_RELAY_REPLICA_NAME";
/// The variable that sets database.url.
#[cfg(feature = "system-tests")]
const DATABASE_URL_VARIABLE: &str = "SAMSA_RELAY_DATABASE_URL";

/// Variables a child must not inherit: the relay's overrides would change what is being
/// checked, and every request stays on this machine.
const INHERITED_VARIABLES_TO_REMOVE: &[&str] = &[
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

// ---------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------

#[cfg(feature = "system-tests")]
#[test]
fn prometheus_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = debian_binary("promtool", "prometheus");
    let folder = deploy_path("prometheus");
    for (rule_file, test_file) in RULE_FILES {
        let check = run_tool(
            Command::new(&promtool)
                .args(["check", "rules", rule_file])
                .current_dir(&folder),
        );
        assert_succeeded(&format!("promtool check rules {rule_file}"), &check);

        // The unit tests name the rule file relative to their own folder, and test it
        // alone.
        let tests = &yaml_documents(&folder.join(test_file))[0];
        assert_eq!(
            tests["rule_files"],
            serde_json::json!([rule_file]),
            "{test_file} tests {rule_file}"
        );
        let unit_tests = run_tool(
            Command::new(&promtool)
                .args(["test", "rules", test_file])
                .current_dir(&folder),
        );
        assert_succeeded(&format!("promtool test rules {test_file}"), &unit_tests);
        assert!(
            text_of(&unit_tests.stdout).contains("SUCCESS"),
            "promtool test rules {test_file} did not report SUCCESS:\n{}",
            describe(&unit_tests)
        );
    }
}

#[cfg(feature = "system-tests")]
#[test]
fn every_alert_has_unit_tests_that_fire_and_that_stay_silent() {
    let mut n_alerts = 0;
    for (rule_file, test_file) in RULE_FILES {
        let rules = yaml_documents(&deploy_path("prometheus").join(rule_file));
        let tests = yaml_documents(&deploy_path("prometheus").join(test_file));
        let mut firing = BTreeSet::new();
        let mut silent = BTreeSet::new();
        for test in array(&tests[0]["tests"]) {
            for case in array(&test["alert_rule_test"]) {
                let alertname = string(&case["alertname"]).to_owned();
                if array(&case["exp_alerts"]).is_empty() {
                    silent.insert(alertname);
                } else {
                    firing.insert(alertname);
                }
            }
        }
        for rule in alerting_rules(&rules[0]) {
            let alertname = string(&rule["alert"]);
            assert!(
                firing.contains(alertname),
                "{alertname}: no test case in {test_file} where it fires"
            );
            // The Watchdog always fires; there is nothing to test it staying silent for.
            if alertname != "Watchdog" {
                assert!(
                    silent.contains(alertname),
                    "{alertname}: no test case in {test_file} where it stays silent"
                );
            }
            n_alerts += 1;
        }
    }
    assert!(n_alerts >= 19, "only {n_alerts} alerts found");
}

#[cfg(feature = "system-tests")]
#[test]
fn every_relay_metric_the_rules_use_is_exposed_or_listed_as_forthcoming() {
    // Read from the source: a label vector with no children yet (deliveries_total before
    // the first delivery) is missing from /metrics.
    let metrics_source = std::fs::read_to_string(repository_path("src/metrics.rs")).unwrap();
    let mut used = BTreeSet::new();
    let rule_files: Vec<Value> = RULE_FILES
        .iter()
        .map(|(rule_file, _)| yaml_documents(&deploy_path("prometheus").join(rule_file)).remove(0))
        .collect();
    for group in rule_files.iter().flat_map(|rules| array(&rules["groups"])) {
        for rule in array(&group["rules"]) {
            let expression = string(&rule["expr"]);
            for (start, _) in expression.match_indices("samsa_relay_") {
                let name: String = expression[start..]
                    .chars()
                    .take_while(|character| {
                        character.is_ascii_lowercase()
                            || character.is_ascii_digit()
                            || *character == '_'
                    })
                    .collect();
                used.insert(name);
            }
        }
    }
    assert!(used.len() >= 5, "relay metrics in the rules: {used:?}");
    for name in &used {
        let exposed = metrics_source.contains(&format!("\"{name}\""));
        assert!(
            exposed || FORTHCOMING_METRICS.contains(&name.as_str()),
            "the rules use {name}, which src/metrics.rs does not define (a typo, or add it \
             to FORTHCOMING_METRICS until the relay exposes it)"
        );
    }
}

#[cfg(feature = "system-tests")]
#[test]
fn prometheus_config_passes_promtool_check_without_warnings() {
    let promtool = debian_binary("promtool", "prometheus");
    let folder = deploy_path("prometheus");
    let output = run_tool(
        Command::new(&promtool)
            .args(["check", "config", "prometheus.yml"])
            .current_dir(&folder),
    );
    assert_succeeded("promtool check config", &output);
    // A missing file_sd file or rule file is only a warning to promtool.
    let everything = format!("{}{}", text_of(&output.stdout), text_of(&output.stderr));
    assert!(
        !everything.contains("WARNING"),
        "promtool check config warned:\n{everything}"
    );
    assert!(
        everything.contains("SUCCESS: 1 rule files found"),
        "promtool did not load the rule file:\n{everything}"
    );

    let config = &yaml_documents(&folder.join("prometheus.yml"))[0];
    let jobs: BTreeMap<&str, &Value> = array(&config["scrape_configs"])
        .iter()
        .map(|job| (string(&job["job_name"]), job))
        .collect();
    for job in [
        "samsa-relay",
        "samsa-login",
        "samsa-central",
        "samsa-relay-ready",
    ] {
        assert!(jobs.contains_key(job), "prometheus.yml has no job {job}");
    }
    assert_eq!(string(&jobs[RELAY_JOB]["metrics_path"]), "/metrics");
    // It scrapes the port of server.metrics_listen in the production config.
    let production = relay_config_toml(
        &std::fs::read_to_string(deploy_path("systemd/samsa-relay.toml")).unwrap(),
    );
    let metrics_listen: std::net::SocketAddr = production["server"]["metrics_listen"]
        .as_str()
        .expect("server.metrics_listen is set")
        .parse()
        .unwrap();
    assert_eq!(
        string(&array(&jobs[RELAY_JOB]["static_configs"])[0]["targets"][0]),
        format!("samsa-relay:{}", metrics_listen.port())
    );
    // Every blackbox job asks for a module that blackbox.yml defines.
    let blackbox = &yaml_documents(&deploy_path("blackbox/blackbox.yml"))[0];
    for (job_name, job) in &jobs {
        if let Some(modules) = job["params"]["module"].as_array() {
            for module in modules {
                let module = string(module);
                assert!(
                    blackbox["modules"].get(module).is_some(),
                    "job {job_name} uses blackbox module {module}, which blackbox.yml lacks"
                );
            }
        }
    }
}

#[cfg(feature = "system-tests")]
#[test]
fn probe_targets_name_known_actors_in_their_own_subregions() {
    let inventory = Inventory::default_samsa();
    let incidents = IncidentsConfig::default();
    let groups = &yaml_documents(&deploy_path("prometheus/targets/samsa-login.yml"))[0];
    assert!(!array(groups).is_empty(), "no probe targets");
    for group in array(groups) {
        let targets = array(&group["targets"]);
        assert_eq!(targets.len(), 1, "one login URL per actor: {group}");
        assert!(
            string(&targets[0]).starts_with("https://"),
            "SAMSA is probed over HTTPS: {group}"
        );
        let actor_id = string(&group["labels"][incidents.actor_label.as_str()]);
        let subregion_id = string(&group["labels"][incidents.subregion_label.as_str()]);
        let actor = inventory
            .actor(actor_id)
            .unwrap_or_else(|| panic!("actor {actor_id:?} is not in deploy/inventory.toml"));
        assert_eq!(
            actor.subregion_id, subregion_id,
            "actor {actor_id} belongs to {}, the target says {subregion_id}",
            actor.subregion_id
        );
    }
}

#[cfg(feature = "system-tests")]
#[test]
fn outage_alerts_carry_the_labels_the_relay_reads() {
    let incidents = IncidentsConfig::default();
    let rules = &yaml_documents(&deploy_path("prometheus/samsa-rules.yml"))[0];
    let by_name: BTreeMap<&str, &Value> = alerting_rules(rules)
        .into_iter()
        .map(|rule| (string(&rule["alert"]), rule))
        .collect();

    // The per-actor alert keeps the target's actor label, and only fires for targets that
    // have one: without it the relay would read the alert as the whole service down.
    let login_down = by_name["SamsaLoginDown"];
    let expression = string(&login_down["expr"]);
    assert!(
        expression.contains(&format!("{}!=\"\"", incidents.actor_label)),
        "SamsaLoginDown must require an actor label: {expression}"
    );
    assert_eq!(string(&login_down["labels"]["service"]), "samsa");

    let whole_service = by_name["SamsaDown"];
    assert_eq!(
        string(&whole_service["labels"][incidents.scope_label.as_str()]),
        "all"
    );

    // The relay recognises the heartbeat by alertname alone.
    let watchdog = by_name
        .get(incidents.watchdog_alertname.as_str())
        .expect("a rule named like incidents.watchdog_alertname");
    assert_eq!(string(&watchdog["expr"]).trim(), "vector(1)");
    assert!(
        watchdog["labels"].get("service").is_none(),
        "the Watchdog must not look like a SAMSA alert"
    );

    // Annotations of alerts sent to the relay are part of its duplicate check: a moving
    // value would make every repeat a new stored webhook.
    for (alertname, rule) in &by_name {
        if rule["labels"]["service"].as_str() == Some("samsa") {
            for (key, annotation) in object(&rule["annotations"]) {
                assert!(
                    !string(annotation).contains("$value"),
                    "{alertname}: annotation {key} uses $value"
                );
            }
        }
    }
}

#[cfg(feature = "system-tests")]
#[test]
fn every_runbook_link_of_the_rules_names_a_section_of_the_docs() {
    let mut links = Vec::new();
    for (rule_file, _) in RULE_FILES {
        let rules = yaml_documents(&deploy_path("prometheus").join(rule_file)).remove(0);
        for rule in alerting_rules(&rules) {
            let alertname = string(&rule["alert"]).to_owned();
            let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
            for (start, _) in runbook.match_indices("docs/") {
                let link: String = runbook[start..]
                    .chars()
                    .take_while(|character| {
                        character.is_ascii_alphanumeric() || "/.-_#".contains(*character)
                    })
                    .collect();
                links.push((alertname.clone(), link.trim_end_matches('.').to_owned()));
            }
        }
    }
    let linked: BTreeSet<&str> = links.iter().map(|(alert, _)| alert.as_str()).collect();
    // The alerts of several replicas each link their runbook section.
    for alertname in [
        "SamsaRelayNoCorrelationLease",
        "SamsaRelayLeaseHeldTwice",
        "SamsaRelayDeliveriesReclaimed",
        "SamsaRelayReplicasNotReady",
    ] {
        assert!(linked.contains(alertname), "{alertname} links no runbook");
    }
    for (alertname, link) in &links {
        let (file, anchor) = link
            .split_once('#')
            .unwrap_or_else(|| panic!("{alertname}: {link} names no section"));
        let page = std::fs::read_to_string(repository_path(file))
            .unwrap_or_else(|error| panic!("{alertname}: {file}: {error}"));
        let anchors: BTreeSet<String> = page
            .lines()
            .filter_map(|line| line.strip_prefix('#'))
            .map(|heading| github_anchor(heading.trim_start_matches('#')))
            .collect();
        assert!(
            anchors.contains(anchor),
            "{alertname}: {file} has no section #{anchor}"
        );
        assert_eq!(
            anchor,
            alertname.to_lowercase(),
            "{alertname}: the runbook section is named after the alert"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------

#[cfg(feature = "system-tests")]
#[test]
fn alertmanager_config_passes_amtool_check() {
    let amtool = debian_binary("amtool", "prometheus-alertmanager");
    let output = run_tool(
        Command::new(&amtool)
            .arg("check-config")
            .arg(deploy_path("alertmanager/alertmanager.yml")),
    );
    assert_succeeded("amtool check-config", &output);

    let config = &yaml_documents(&deploy_path("alertmanager/alertmanager.yml"))[0];
    let relay_receiver = array(&config["receivers"])
        .iter()
        .find(|receiver| string(&receiver["name"]) == "samsa-relay")
        .expect("a samsa-relay receiver");
    let webhook = &array(&relay_receiver["webhook_configs"])[0];
    assert_eq!(
        string(&webhook["url"]),
        "http://samsa-relay:9095/webhook/alertmanager"
    );
    assert_eq!(
        webhook["send_resolved"], true,
        "the relay resolves incidents from resolutions"
    );
    assert_eq!(webhook["max_alerts"], 0, "the relay needs every alert");
    assert_eq!(
        string(&webhook["http_config"]["authorization"]["credentials_file"]),
        "/etc/alertmanager/secrets/samsa-relay-token"
    );
    assert!(
        config.get("inhibit_rules").is_none(),
        "an inhibited alert would be missing from the webhooks the relay reads"
    );
}

#[cfg(feature = "system-tests")]
#[test]
fn alertmanager_routes_every_rule_to_the_receiver_it_belongs_to() {
    let amtool = debian_binary("amtool", "prometheus-alertmanager");
    let config_path = deploy_path("alertmanager/alertmanager.yml");
    let incidents = IncidentsConfig::default();
    let rule_files: Vec<Value> = RULE_FILES
        .iter()
        .map(|(rule_file, _)| yaml_documents(&deploy_path("prometheus").join(rule_file)).remove(0))
        .collect();
    let mut checked = 0;
    for rule in rule_files.iter().flat_map(alerting_rules) {
        let alertname = string(&rule["alert"]);
        let mut labels = vec![format!("alertname={alertname}")];
        if let Some(rule_labels) = rule["labels"].as_object() {
            for (name, value) in rule_labels {
                labels.push(format!("{name}={}", string(value)));
            }
        }
        // Only SAMSA outages and the heartbeat may reach the relay: it reads every other
        // alert as an outage too.
        let expected = if alertname == incidents.watchdog_alertname
            || ALERTS_FOR_THE_RELAY.contains(&alertname)
        {
            "samsa-relay"
        } else {
            "samsa-operations"
        };
        assert_eq!(
            route(&amtool, &config_path, &labels),
            expected,
            "receiver for {labels:?}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} alerting rules found");
    // Anything else is not this Alertmanager's business.
    assert_eq!(
        route(&amtool, &config_path, &["alertname=DiskFull".to_owned()]),
        "null"
    );
}

#[cfg(feature = "system-tests")]
#[test]
fn the_watchdog_repeats_well_inside_the_relays_timeout() {
    let config = &yaml_documents(&deploy_path("alertmanager/alertmanager.yml"))[0];
    let watchdog_matcher = format!(
        "alertname=\"{}\"",
        IncidentsConfig::default().watchdog_alertname
    );
    let routes = array(&config["route"]["routes"]);
    let position = routes
        .iter()
        .position(|route| {
            array(&route["matchers"])
                .iter()
                .any(|matcher| string(matcher) == watchdog_matcher)
        })
        .expect("a route for the Watchdog");
    assert_eq!(
        position, 0,
        "the Watchdog route must come before the others"
    );
    let route = &routes[position];
    assert_eq!(string(&route["receiver"]), "samsa-relay");
    // Alertmanager repeats on group_interval ticks once repeat_interval has passed.
    let period =
        duration(string(&route["group_interval"])) + duration(string(&route["repeat_interval"]));
    let relay_configs = [
        relay_config_toml(
            &std::fs::read_to_string(deploy_path("systemd/samsa-relay.toml")).unwrap(),
        ),
        relay_config_toml(&kubernetes_relay_config().0),
        relay_config_toml(&std::fs::read_to_string(deploy_path("samsa-relay.toml")).unwrap()),
    ];
    for relay_config in &relay_configs {
        let timeout = duration(
            relay_config["incidents"]["watchdog_timeout"]
                .as_str()
                .unwrap_or("10m"),
        );
        assert!(
            period * 2 <= timeout,
            "the Watchdog arrives every {period:?} at worst; the relay's timeout {timeout:?} \
             should allow at least two misses"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Blackbox exporter
// ---------------------------------------------------------------------------------------

#[cfg(feature = "system-tests")]
#[test]
fn blackbox_config_passes_the_exporters_check() {
    let exporter = debian_binary(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    );
    let output = run_tool(
        Command::new(&exporter)
            .arg(format!(
                "--config.file={}",
                deploy_path("blackbox/blackbox.yml").display()
            ))
            .arg("--config.check"),
    );
    assert_succeeded("prometheus-blackbox-exporter --config.check", &output);
    assert!(
        text_of(&output.stderr).contains("Config file is ok"),
        "the exporter did not confirm the config:\n{}",
        describe(&output)
    );

    let modules = &yaml_documents(&deploy_path("blackbox/blackbox.yml"))[0]["modules"];
    let login = &modules["samsa_login"];
    assert_eq!(string(&login["prober"]), "http");
    assert_eq!(login["http"]["follow_redirects"], true);
    assert_eq!(string(&login["http"]["preferred_ip_protocol"]), "ip4");
    assert!(!array(&login["http"]["fail_if_body_not_matches_regexp"]).is_empty());
}

// ---------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------

#[test]
fn systemd_config_passes_check_config_with_the_units_credentials() {
    let unit = std::fs::read_to_string(deploy_path("systemd/samsa-relay.service")).unwrap();
    let config_text = std::fs::read_to_string(deploy_path("systemd/samsa-relay.toml")).unwrap();
    let config = relay_config_toml(&config_text);

    // Every credential the config reads is loaded by the unit, and nothing more.
    let loaded: BTreeSet<String> = directive_values(&unit, "LoadCredential")
        .iter()
        .map(|value| {
            let (name, source) = value.split_once(':').expect("LoadCredential=NAME:PATH");
            assert!(
                source.starts_with(&format!("{CONFIG_FOLDER}credentials/")),
                "credential sources live in {CONFIG_FOLDER}credentials/: {value}"
            );
            name.to_owned()
        })
        .collect();
    let referenced: BTreeSet<String> = paths_under(&config, SYSTEMD_CREDENTIALS)
        .into_iter()
        .collect();
    assert_eq!(
        loaded, referenced,
        "LoadCredential= names vs the config's {SYSTEMD_CREDENTIALS} files"
    );

    // Both commands run the config this file is installed as.
    let config_path = format!("{CONFIG_FOLDER}samsa-relay.toml");
    for directive in ["ExecStartPre", "ExecStart"] {
        let command = &directive_values(&unit, directive)[0];
        assert!(
            command.ends_with(&format!("--config {config_path}")),
            "{directive}={command}"
        );
    }
    assert!(directive_values(&unit, "ExecStartPre")[0].contains(" check-config "));

    // The database lives in the unit's StateDirectory.
    assert_eq!(directive_values(&unit, "StateDirectory"), ["samsa-relay"]);
    assert!(
        config["database"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sqlite://{STATE_FOLDER}")),
        "database.url must be under {STATE_FOLDER}"
    );

    // systemd's SIGKILL comes after the relay's drain.
    let stop_timeout = duration(&directive_values(&unit, "TimeoutStopSec")[0]);
    let shutdown_grace = duration(config["server"]["shutdown_grace"].as_str().unwrap());
    assert!(
        shutdown_grace + Duration::from_secs(10) <= stop_timeout,
        "TimeoutStopSec {stop_timeout:?} leaves too little beyond shutdown_grace {shutdown_grace:?}"
    );

    // Install the files where the config expects them, below a temporary root: the
    // credentials, and deploy/systemd/ as /etc/samsa-relay/.
    let root = tempfile::tempdir().expect("temporary folder");
    let credentials = root.path().join("credentials");
    let etc = root.path().join("etc");
    let state = root.path().join("state");
    for folder in [&credentials, &etc, &state] {
        std::fs::create_dir_all(folder).unwrap();
    }
    for name in &loaded {
        std::fs::write(credentials.join(name), test_secret(name)).unwrap();
    }
    for relative in paths_under(&config, CONFIG_FOLDER) {
        let shipped = deploy_path("systemd").join(&relative);
        assert!(
            shipped.is_file(),
            "the config reads {CONFIG_FOLDER}{relative}; ship an example as {}",
            shipped.display()
        );
        let installed = etc.join(&relative);
        std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
        std::fs::copy(&shipped, &installed).unwrap();
    }
    let installed_config = root.path().join("samsa-relay.toml");
    std::fs::write(
        &installed_config,
        rewrite_paths(
            &config_text,
            &[
                (SYSTEMD_CREDENTIALS, &credentials),
                (CONFIG_FOLDER, &etc),
                (STATE_FOLDER, &state),
            ],
        ),
    )
    .unwrap();
    assert_config_valid(root.path(), &installed_config);
}

#[cfg(feature = "system-tests")]
#[test]
fn systemd_unit_passes_systemd_analyze_verify_and_security() {
    let systemd_analyze = debian_binary("systemd-analyze", "systemd");
    // verify checks that ExecStart= and ExecStartPre= are executable: point them at the
    // binary cargo built. The file name must stay samsa-relay.service.
    let unit = std::fs::read_to_string(deploy_path("systemd/samsa-relay.service"))
        .unwrap()
        .replace("/usr/local/bin/samsa-relay", RELAY_BINARY);
    let folder = tempfile::tempdir().expect("temporary folder");
    let unit_path = folder.path().join("samsa-relay.service");
    std::fs::write(&unit_path, unit).unwrap();

    let verify = run_tool(
        Command::new(&systemd_analyze)
            .arg("verify")
            .arg(&unit_path)
            .current_dir(folder.path()),
    );
    assert_succeeded("systemd-analyze verify", &verify);
    // An unknown or misspelt directive is only a warning, with the file's name in it.
    let verify_stderr = text_of(&verify.stderr);
    let complaints: Vec<&str> = verify_stderr
        .lines()
        .filter(|line| line.contains("samsa-relay.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complained:\n{}",
        complaints.join("\n")
    );

    // The sandbox: exposure 2.0 or lower on systemd's 0-10 scale ("OK").
    let security = run_tool(
        Command::new(&systemd_analyze)
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&unit_path)
            .current_dir(folder.path()),
    );
    assert_succeeded("systemd-analyze security --threshold=20", &security);
}

#[test]
fn systemd_ha_config_is_the_single_host_one_over_postgresql_and_passes_check_config() {
    let unit = std::fs::read_to_string(deploy_path("systemd/samsa-relay.service")).unwrap();
    let drop_in = std::fs::read_to_string(deploy_path(SYSTEMD_HA_DROP_IN)).unwrap();
    let single = relay_config_toml(
        &std::fs::read_to_string(deploy_path("systemd/samsa-relay.toml")).unwrap(),
    );
    let config_text = std::fs::read_to_string(deploy_path("systemd/ha/samsa-relay.toml")).unwrap();
    let config = relay_config_toml(&config_text);

    // Every host's file is one host's, but for the database and the cluster.
    assert_same_but_database_and_cluster(&single, &config, "deploy/systemd/ha/samsa-relay.toml");

    // PostgreSQL on another host: the certificate checked against the CA and the host
    // name, the password not in the URL but a credential, the CA a plain config file.
    let database = &config["database"];
    let url = database["url"].as_str().expect("database.url");
    assert_postgres_url_verifies_the_server(url);
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    assert!(
        !authority.split('@').next().unwrap().contains(':'),
        "no password in database.url: {url}"
    );
    assert!(
        database["password_file"]
            .as_str()
            .is_some_and(|path| path.starts_with(SYSTEMD_CREDENTIALS)),
        "database.password_file is a credential"
    );
    let ca_file = database["ca_file"].as_str().expect("database.ca_file");
    assert!(ca_file.starts_with(CONFIG_FOLDER), "{ca_file}");
    assert!(database["max_connections"].as_integer().unwrap() >= 1);
    duration(
        config["cluster"]["lease_ttl"]
            .as_str()
            .expect("cluster.lease_ttl"),
    );
    // The same file on every host: each one's name comes from the drop-in.
    assert!(config["cluster"].get("replica_name").is_none());
    let environment = directive_values(&drop_in, "Environment");
    assert_eq!(environment, [format!("{REPLICA_NAME_VARIABLE}=%l")]);
    assert_relay_reads_variable(REPLICA_NAME_VARIABLE);

    // Every credential the config reads is loaded by the unit or the drop-in.
    let loaded: BTreeSet<String> = directive_values(&unit, "LoadCredential")
        .iter()
        .chain(&directive_values(&drop_in, "LoadCredential"))
        .map(|value| {
            let (name, source) = value.split_once(':').expect("LoadCredential=NAME:PATH");
            assert!(
                source.starts_with(&format!("{CONFIG_FOLDER}credentials/")),
                "credential sources live in {CONFIG_FOLDER}credentials/: {value}"
            );
            name.to_owned()
        })
        .collect();
    let referenced: BTreeSet<String> = paths_under(&config, SYSTEMD_CREDENTIALS)
        .into_iter()
        .collect();
    assert_eq!(
        loaded, referenced,
        "LoadCredential= names of the unit and the drop-in vs the config's {SYSTEMD_CREDENTIALS} files"
    );

    // Install it below a temporary root, as on one host; the database's CA is the
    // site's own, so the test makes one.
    let root = tempfile::tempdir().expect("temporary folder");
    let credentials = root.path().join("credentials");
    let etc = root.path().join("etc");
    for folder in [&credentials, &etc] {
        std::fs::create_dir_all(folder).unwrap();
    }
    for name in &loaded {
        std::fs::write(credentials.join(name), test_secret(name)).unwrap();
    }
    for relative in paths_under(&config, CONFIG_FOLDER) {
        let installed = etc.join(&relative);
        std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
        if format!("{CONFIG_FOLDER}{relative}") == ca_file {
            std::fs::write(&installed, test_certificate_authority()).unwrap();
            continue;
        }
        let shipped = deploy_path("systemd").join(&relative);
        assert!(
            shipped.is_file(),
            "the config reads {CONFIG_FOLDER}{relative}; ship an example as {}",
            shipped.display()
        );
        std::fs::copy(&shipped, &installed).unwrap();
    }
    let installed_config = root.path().join("samsa-relay.toml");
    std::fs::write(
        &installed_config,
        rewrite_paths(
            &config_text,
            &[(SYSTEMD_CREDENTIALS, &credentials), (CONFIG_FOLDER, &etc)],
        ),
    )
    .unwrap();
    assert_config_valid_with(
        root.path(),
        &installed_config,
        &[(REPLICA_NAME_VARIABLE, "relay-1")],
    );
}

#[cfg(feature = "system-tests")]
#[test]
fn systemd_ha_drop_in_passes_systemd_analyze_verify_and_security() {
    let systemd_analyze = debian_binary("systemd-analyze", "systemd");
    // The unit and its drop-in as installed: NAME.service and NAME.service.d/ side by side,
    // where systemd-analyze reads both.
    let unit = std::fs::read_to_string(deploy_path("systemd/samsa-relay.service"))
        .unwrap()
        .replace("/usr/local/bin/samsa-relay", RELAY_BINARY);
    let folder = tempfile::tempdir().expect("temporary folder");
    let unit_path = folder.path().join("samsa-relay.service");
    std::fs::write(&unit_path, unit).unwrap();
    let drop_in_folder = folder.path().join("samsa-relay.service.d");
    std::fs::create_dir(&drop_in_folder).unwrap();
    std::fs::copy(
        deploy_path(SYSTEMD_HA_DROP_IN),
        drop_in_folder.join("postgresql.conf"),
    )
    .unwrap();

    let verify = run_tool(
        Command::new(&systemd_analyze)
            .arg("verify")
            .arg(&unit_path)
            .current_dir(folder.path()),
    );
    assert_succeeded("systemd-analyze verify", &verify);
    // An unknown directive or specifier is only a warning, with the file's name in it.
    let verify_stderr = text_of(&verify.stderr);
    let complaints: Vec<&str> = verify_stderr
        .lines()
        .filter(|line| line.contains("samsa-relay.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complained:\n{}",
        complaints.join("\n")
    );

    let security = run_tool(
        Command::new(&systemd_analyze)
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&unit_path)
            .current_dir(folder.path()),
    );
    assert_succeeded("systemd-analyze security --threshold=20", &security);
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

#[cfg(feature = "system-tests")]
#[test]
fn kubernetes_manifests_parse_and_fit_together() {
    let manifests = kubernetes_manifests();
    for (file, manifest) in &manifests {
        for field in ["apiVersion", "kind"] {
            assert!(manifest[field].is_string(), "{file}: no {field}");
        }
        if string(&manifest["kind"]) != "Kustomization" {
            assert!(
                manifest["metadata"]["name"].is_string(),
                "{file}: no metadata.name"
            );
            assert_eq!(
                manifest["metadata"]["labels"]["app.kubernetes.io/name"], "samsa-relay",
                "{file}: the common label"
            );
        }
    }
    let by_kind = |kind: &str| -> &Value {
        let found: Vec<&Value> = manifests
            .iter()
            .map(|(_, manifest)| manifest)
            .filter(|manifest| manifest["kind"] == kind)
            .collect();
        assert_eq!(found.len(), 1, "exactly one {kind}");
        found[0]
    };
    let deployment = by_kind("Deployment");
    let service = by_kind("Service");
    let config_map = by_kind("ConfigMap");
    let secret = by_kind("Secret");
    let claim = by_kind("PersistentVolumeClaim");
    let pod_monitor = by_kind("PodMonitor");
    let kustomization = by_kind("Kustomization");
    let (relay_toml, _) = kubernetes_relay_config();
    let relay_config = relay_config_toml(&relay_toml);

    // One writer for SQLite.
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "SQLite has one writer: one replica");
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let pod = &spec["template"]["spec"];
    let pod_labels = object(&spec["template"]["metadata"]["labels"]);
    assert_labels_select(&spec["selector"]["matchLabels"], pod_labels, "Deployment");
    assert_eq!(pod["automountServiceAccountToken"], false);

    // Runs as the image's user, without privileges.
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(
        pod_security["runAsUser"].as_u64(),
        Some(dockerfile_user_id()),
        "runAsUser must be the image's USER"
    );
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    let containers = array(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let container_security = &container["securityContext"];
    assert_eq!(container_security["readOnlyRootFilesystem"], true);
    assert_eq!(container_security["allowPrivilegeEscalation"], false);
    assert_eq!(
        container_security["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );

    // Probes on the relay's health routes, on its named port.
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(
            container[probe]["httpGet"]["path"], path,
            "{probe} must call {path}"
        );
        assert_eq!(container[probe]["httpGet"]["port"], "http");
    }
    // /readyz answers within 3 s even when storage hangs.
    assert!(
        container["readinessProbe"]["timeoutSeconds"]
            .as_u64()
            .unwrap()
            > 3
    );
    for (kind, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        assert!(
            container["resources"][kind][resource].is_string(),
            "resources.{kind}.{resource}"
        );
    }

    // The port: the relay's listen address, the container port and the Service agree.
    let listen: std::net::SocketAddr = relay_config["server"]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        listen.ip().is_unspecified(),
        "inside a pod the relay listens on all interfaces"
    );
    let container_port = &array(&container["ports"])[0];
    assert_eq!(container_port["name"], "http");
    assert_eq!(
        container_port["containerPort"].as_u64(),
        Some(u64::from(listen.port()))
    );
    assert_labels_select(&service["spec"]["selector"], pod_labels, "Service");
    let service_port = &array(&service["spec"]["ports"])[0];
    assert_eq!(service_port["targetPort"], "http");
    assert_eq!(
        service_port["port"].as_u64(),
        Some(u64::from(listen.port())),
        "Alertmanager's URL uses samsa-relay:{}",
        listen.port()
    );

    // SIGKILL comes after the relay's drain.
    let grace_seconds = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown_grace = duration(relay_config["server"]["shutdown_grace"].as_str().unwrap());
    assert!(
        shutdown_grace + Duration::from_secs(10) <= Duration::from_secs(grace_seconds),
        "terminationGracePeriodSeconds {grace_seconds} vs shutdown_grace {shutdown_grace:?}"
    );

    // Volumes: the PVC holds the database, the ConfigMap the config, the Secret the
    // secret files, each where the relay's config says.
    let volumes: BTreeMap<&str, &Value> = array(&pod["volumes"])
        .iter()
        .map(|volume| (string(&volume["name"]), volume))
        .collect();
    let mount_of = |source: &str, name: &str| -> String {
        let (volume_name, _) = volumes
            .iter()
            .find(|(_, volume)| {
                volume[source]
                    .as_object()
                    .is_some_and(|fields| fields.values().any(|value| value == name))
            })
            .unwrap_or_else(|| panic!("no {source} volume for {name}"));
        let mount = array(&container["volumeMounts"])
            .iter()
            .find(|mount| mount["name"] == *volume_name)
            .unwrap_or_else(|| panic!("volume {volume_name} is not mounted"));
        format!("{}/", string(&mount["mountPath"]).trim_end_matches('/'))
    };
    let claim_name = string(&claim["metadata"]["name"]);
    assert_eq!(mount_of("persistentVolumeClaim", claim_name), STATE_FOLDER);
    assert_eq!(
        array(&claim["spec"]["accessModes"]),
        &[Value::from("ReadWriteOnce")]
    );
    assert!(
        relay_config["database"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sqlite://{STATE_FOLDER}")),
        "database.url must be on the PersistentVolumeClaim"
    );
    let config_map_name = string(&config_map["metadata"]["name"]);
    assert_eq!(mount_of("configMap", config_map_name), CONFIG_FOLDER);
    let args: Vec<&str> = array(&container["args"]).iter().map(string).collect();
    let config_path = format!("{CONFIG_FOLDER}samsa-relay.toml");
    assert_eq!(args, ["serve", "--config", config_path.as_str()]);
    for relative in paths_under(&relay_config, CONFIG_FOLDER) {
        assert!(
            config_map["data"].get(&relative).is_some(),
            "the config reads {CONFIG_FOLDER}{relative}, which the ConfigMap lacks"
        );
    }
    let secret_name = string(&secret["metadata"]["name"]);
    assert_eq!(mount_of("secret", secret_name), KUBERNETES_SECRETS);
    assert_eq!(
        volumes["secrets"]["secret"]["defaultMode"].as_u64(),
        Some(0o440),
        "secret files readable by the relay's group only"
    );
    let secret_keys: BTreeSet<String> = object(&secret["stringData"]).keys().cloned().collect();
    let referenced: BTreeSet<String> = paths_under(&relay_config, KUBERNETES_SECRETS)
        .into_iter()
        .collect();
    assert_eq!(
        secret_keys, referenced,
        "the Secret's keys vs the config's {KUBERNETES_SECRETS} files"
    );

    // /metrics on a port of its own: the config's metrics_listen is the container port
    // "metrics", which the Service does not expose.
    let metrics_listen: std::net::SocketAddr = relay_config["server"]["metrics_listen"]
        .as_str()
        .expect("server.metrics_listen is set")
        .parse()
        .unwrap();
    let metrics_port = array(&container["ports"])
        .iter()
        .find(|port| port["name"] == "metrics")
        .expect("a container port named metrics");
    assert_eq!(
        metrics_port["containerPort"].as_u64(),
        Some(u64::from(metrics_listen.port()))
    );
    assert!(
        array(&service["spec"]["ports"])
            .iter()
            .all(|port| port["targetPort"] != "metrics"),
        "the Service does not expose /metrics"
    );

    // The PodMonitor scrapes this pod's /metrics as job="samsa-relay".
    let monitor = &pod_monitor["spec"];
    assert_eq!(pod_monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_labels_select(
        &monitor["selector"]["matchLabels"],
        pod_labels,
        "PodMonitor",
    );
    let job_label = string(&monitor["jobLabel"]);
    assert_eq!(
        pod_labels.get(job_label).and_then(Value::as_str),
        Some(RELAY_JOB),
        "the pod label {job_label} becomes the job the rules match on"
    );
    let endpoint = &array(&monitor["podMetricsEndpoints"])[0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");

    // kubectl apply -k applies everything but the example Secret.
    let listed: BTreeSet<&str> = array(&kustomization["resources"])
        .iter()
        .map(string)
        .collect();
    let files: BTreeSet<&str> = manifests
        .iter()
        .map(|(file, _)| file.as_str())
        .filter(|file| *file != "kustomization.yaml" && *file != "secret.example.yaml")
        .collect();
    assert_eq!(listed, files, "kustomization.yaml resources");
}

#[cfg(feature = "system-tests")]
#[test]
fn kubernetes_config_passes_check_config_and_refuses_the_placeholder_secrets() {
    let (relay_toml, config_map_data) = kubernetes_relay_config();
    let relay_config = relay_config_toml(&relay_toml);
    let secret = kubernetes_manifests()
        .into_iter()
        .map(|(_, manifest)| manifest)
        .find(|manifest| manifest["kind"] == "Secret")
        .expect("the example Secret");

    // The pod's file system below a temporary root: the ConfigMap's keys in etc/, the
    // Secret's in secrets/, the volume in state/.
    let root = tempfile::tempdir().expect("temporary folder");
    let etc = root.path().join("etc");
    let secrets = root.path().join("secrets");
    let state = root.path().join("state");
    for folder in [&etc, &secrets, &state] {
        std::fs::create_dir_all(folder).unwrap();
    }
    for (key, value) in &config_map_data {
        std::fs::write(etc.join(key), value).unwrap();
    }
    let installed_config = root.path().join("samsa-relay.toml");
    std::fs::write(
        &installed_config,
        rewrite_paths(
            &relay_toml,
            &[
                (KUBERNETES_SECRETS, &secrets),
                (CONFIG_FOLDER, &etc),
                (STATE_FOLDER, &state),
            ],
        ),
    )
    .unwrap();
    let secret_names = paths_under(&relay_config, KUBERNETES_SECRETS);
    assert!(!secret_names.is_empty());

    // With the example Secret's placeholders the relay refuses to start.
    for name in &secret_names {
        std::fs::write(
            secrets.join(name),
            string(&secret["stringData"][name.as_str()]),
        )
        .unwrap();
    }
    let refused = check_config(root.path(), &installed_config);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "check-config must refuse the placeholder secrets:\n{}",
        describe(&refused)
    );
    let problems = text_of(&refused.stderr);
    for key in ["webhook.token", "links.secret"] {
        assert!(
            problems.contains(&format!("{key}: must be at least")),
            "no {key} problem for its placeholder:\n{problems}"
        );
    }

    // With real secrets it is valid.
    for name in &secret_names {
        std::fs::write(secrets.join(name), test_secret(name)).unwrap();
    }
    assert_config_valid(root.path(), &installed_config);
}

#[cfg(feature = "system-tests")]
#[test]
fn kubernetes_ha_manifests_parse_and_fit_together() {
    let manifests = kubernetes_manifests_in("kubernetes/ha");
    for (file, manifest) in &manifests {
        for field in ["apiVersion", "kind"] {
            assert!(manifest[field].is_string(), "ha/{file}: no {field}");
        }
        if string(&manifest["kind"]) != "Kustomization" {
            assert!(
                manifest["metadata"]["name"].is_string(),
                "ha/{file}: no metadata.name"
            );
            assert_eq!(
                manifest["metadata"]["labels"]["app.kubernetes.io/name"], "samsa-relay",
                "ha/{file}: the common label"
            );
        }
    }
    let all_of = |kind: &str| -> Vec<&Value> {
        manifests
            .iter()
            .map(|(_, manifest)| manifest)
            .filter(|manifest| manifest["kind"] == kind)
            .collect()
    };
    let by_kind = |kind: &str| -> &Value {
        let found = all_of(kind);
        assert_eq!(found.len(), 1, "exactly one {kind} in ha/");
        found[0]
    };
    let deployment = by_kind("Deployment");
    let service = by_kind("Service");
    let budget = by_kind("PodDisruptionBudget");
    let cluster = by_kind("Cluster");
    let object_store = by_kind("ObjectStore");
    let scheduled_backup = by_kind("ScheduledBackup");
    let kustomization = by_kind("Kustomization");
    assert!(
        all_of("PersistentVolumeClaim").is_empty(),
        "the replicas keep nothing on a volume"
    );
    let single = kubernetes_manifests();
    let single_of = |kind: &str| -> &Value {
        single
            .iter()
            .map(|(_, manifest)| manifest)
            .find(|manifest| manifest["kind"] == kind)
            .unwrap_or_else(|| panic!("a {kind} in deploy/kubernetes/"))
    };

    // The config: the single-node one with PostgreSQL and the cluster settings.
    let (relay_toml, data) = kubernetes_relay_config_in("kubernetes/ha");
    let relay_config = relay_config_toml(&relay_toml);
    let (single_toml, single_data) = kubernetes_relay_config();
    assert_same_but_database_and_cluster(
        &relay_config_toml(&single_toml),
        &relay_config,
        "deploy/kubernetes/ha/configmap.yaml",
    );
    for (key, value) in &single_data {
        if key != "samsa-relay.toml" {
            assert_eq!(data.get(key), Some(value), "ConfigMap key {key}");
        }
    }
    let database = &relay_config["database"];
    assert!(
        database.get("url").is_none(),
        "the URL comes from {DATABASE_URL_VARIABLE} alone"
    );
    let max_connections = database["max_connections"]
        .as_integer()
        .expect("database.max_connections") as u64;
    let ca_file = database["ca_file"].as_str().expect("database.ca_file");
    duration(
        relay_config["cluster"]["lease_ttl"]
            .as_str()
            .expect("cluster.lease_ttl"),
    );

    // Three replicas, replaced one at a time, never more than three.
    let spec = &deployment["spec"];
    let replicas = spec["replicas"].as_u64().unwrap();
    assert!(replicas >= 3, "replicas: {replicas}");
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    let rolling = &spec["strategy"]["rollingUpdate"];
    assert_eq!(rolling["maxUnavailable"], 1);
    assert_eq!(rolling["maxSurge"], 0);
    assert!(spec["minReadySeconds"].as_u64().unwrap_or(0) > 0);
    let pod = &spec["template"]["spec"];
    let pod_labels = object(&spec["template"]["metadata"]["labels"]);
    assert_labels_select(&spec["selector"]["matchLabels"], pod_labels, "Deployment");

    // The disruption budget: one replica at a time, at least two left.
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_labels_select(
        &budget["spec"]["selector"]["matchLabels"],
        pod_labels,
        "PodDisruptionBudget",
    );
    let allowed = match budget["spec"]["maxUnavailable"].as_u64() {
        Some(max_unavailable) => max_unavailable,
        None => replicas - budget["spec"]["minAvailable"].as_u64().expect("a budget"),
    };
    assert_eq!(allowed, 1, "one disruption at a time");
    assert!(replicas - allowed >= 2);

    // Placement: preferred one per node, spread across zones, both selecting the pods.
    let anti_affinity = &pod["affinity"]["podAntiAffinity"];
    assert!(
        anti_affinity
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .is_none(),
        "preferred, not required (deployment.yaml says why)"
    );
    let preferred = &array(&anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"])[0];
    let term = &preferred["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_labels_select(
        &term["labelSelector"]["matchLabels"],
        pod_labels,
        "anti-affinity",
    );
    let spread = array(&pod["topologySpreadConstraints"])
        .iter()
        .find(|constraint| constraint["topologyKey"] == "topology.kubernetes.io/zone")
        .expect("a spread across zones");
    assert_eq!(spread["maxSkew"], 1);
    assert_labels_select(
        &spread["labelSelector"]["matchLabels"],
        pod_labels,
        "topology spread",
    );

    // Security and the container as in the single-node Deployment.
    let single_pod = &single_of("Deployment")["spec"]["template"]["spec"];
    for field in [
        "securityContext",
        "automountServiceAccountToken",
        "enableServiceLinks",
    ] {
        assert_eq!(pod[field], single_pod[field], "pod {field}");
    }
    let containers = array(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let single_container = &array(&single_pod["containers"])[0];
    for field in [
        "securityContext",
        "image",
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
    ] {
        assert_eq!(
            container[field], single_container[field],
            "container {field}"
        );
    }
    // Start-up includes the migrations and waiting for the database: no shorter.
    let startup_seconds = |probe: &Value| {
        probe["periodSeconds"].as_u64().unwrap() * probe["failureThreshold"].as_u64().unwrap()
    };
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        startup_seconds(&container["startupProbe"])
            >= startup_seconds(&single_container["startupProbe"])
    );

    // The replica's name and the database URL from the environment.
    let environment = deployment_environment(container, cluster, "samsa-relay-6d8f7c9b5-x2k4q");
    for variable in environment
        .keys()
        .filter(|name| name.starts_with("SAMSA_RELAY_"))
    {
        assert_relay_reads_variable(variable);
    }
    assert_eq!(
        environment.get(REPLICA_NAME_VARIABLE).map(String::as_str),
        Some("samsa-relay-6d8f7c9b5-x2k4q"),
        "the replica is named after its pod"
    );
    let url = environment
        .get(DATABASE_URL_VARIABLE)
        .expect("the database URL");
    assert_postgres_url_verifies_the_server(url);
    let namespace = string(&kustomization["namespace"]);
    let cluster_name = string(&cluster["metadata"]["name"]);
    assert!(
        url.contains(&format!("@{cluster_name}-rw.{namespace}:5432/")),
        "the read-write service, a name the server's certificate holds: {url}"
    );

    // Volumes: the config, the secrets and the database's CA, each where the config
    // reads it.
    let volumes: BTreeMap<&str, &Value> = array(&pod["volumes"])
        .iter()
        .map(|volume| (string(&volume["name"]), volume))
        .collect();
    let mount_path = |volume_name: &str| -> String {
        let mount = array(&container["volumeMounts"])
            .iter()
            .find(|mount| mount["name"] == volume_name)
            .unwrap_or_else(|| panic!("volume {volume_name} is not mounted"));
        assert_eq!(
            mount["readOnly"], true,
            "{volume_name} is mounted read-only"
        );
        format!("{}/", string(&mount["mountPath"]).trim_end_matches('/'))
    };
    let volume_with = |source: &str, name: &str| -> &str {
        volumes
            .iter()
            .find(|(_, volume)| {
                volume[source]
                    .as_object()
                    .is_some_and(|fields| fields.values().any(|value| value == name))
            })
            .map(|(volume_name, _)| *volume_name)
            .unwrap_or_else(|| panic!("no {source} volume for {name}"))
    };
    assert_eq!(
        mount_path(volume_with("configMap", "samsa-relay-config")),
        CONFIG_FOLDER
    );
    let args: Vec<&str> = array(&container["args"]).iter().map(string).collect();
    assert_eq!(args[2], format!("{CONFIG_FOLDER}samsa-relay.toml"));
    for relative in paths_under(&relay_config, CONFIG_FOLDER) {
        assert!(
            data.contains_key(&relative),
            "the config reads {CONFIG_FOLDER}{relative}, which the ConfigMap lacks"
        );
    }
    let single_secret = single_of("Secret");
    let secrets_volume = volume_with("secret", string(&single_secret["metadata"]["name"]));
    assert_eq!(mount_path(secrets_volume), KUBERNETES_SECRETS);
    assert_eq!(
        volumes[secrets_volume]["secret"]["defaultMode"].as_u64(),
        Some(0o440)
    );
    let secret_keys: BTreeSet<String> = object(&single_secret["stringData"])
        .keys()
        .cloned()
        .collect();
    let referenced: BTreeSet<String> = paths_under(&relay_config, KUBERNETES_SECRETS)
        .into_iter()
        .collect();
    assert_eq!(
        secret_keys, referenced,
        "the Secret's keys vs the config's {KUBERNETES_SECRETS} files"
    );
    let ca_volume = volume_with("secret", &format!("{cluster_name}-ca"));
    let items = array(&volumes[ca_volume]["secret"]["items"]);
    assert_eq!(items.len(), 1, "only the CA's certificate, not its key");
    assert_eq!(items[0]["key"], "ca.crt");
    assert_eq!(
        format!("{}{}", mount_path(ca_volume), string(&items[0]["path"])),
        ca_file,
        "database.ca_file is the mounted ca.crt"
    );

    // Stopping: the preStop pause and the relay's drain fit in the grace period.
    let pause: Vec<&str> = array(&container["lifecycle"]["preStop"]["exec"]["command"])
        .iter()
        .map(string)
        .collect();
    assert_eq!(pause[0], "sleep");
    let pause = Duration::from_secs(pause[1].parse().unwrap());
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    let shutdown_grace = duration(relay_config["server"]["shutdown_grace"].as_str().unwrap());
    assert!(
        pause + shutdown_grace + Duration::from_secs(10) <= grace,
        "terminationGracePeriodSeconds {grace:?} vs preStop {pause:?} and shutdown_grace {shutdown_grace:?}"
    );

    // The Service: every ready replica, no affinity, no /metrics.
    assert_labels_select(&service["spec"]["selector"], pod_labels, "Service");
    assert_eq!(
        service["spec"]["ports"],
        single_of("Service")["spec"]["ports"]
    );
    assert!(
        service["spec"]["sessionAffinity"].is_null()
            || service["spec"]["sessionAffinity"] == "None"
    );

    // The relay's PodMonitor: the single-node one, with the pod's name as instance.
    let pod_monitors = all_of("PodMonitor");
    let relay_monitor = pod_monitors
        .iter()
        .find(|monitor| monitor["metadata"]["name"] == "samsa-relay")
        .expect("the relay's PodMonitor");
    assert_labels_select(
        &relay_monitor["spec"]["selector"]["matchLabels"],
        pod_labels,
        "PodMonitor",
    );
    let single_monitor = single_of("PodMonitor");
    assert_eq!(
        relay_monitor["spec"]["jobLabel"],
        single_monitor["spec"]["jobLabel"]
    );
    let endpoint = &array(&relay_monitor["spec"]["podMetricsEndpoints"])[0];
    let single_endpoint = &array(&single_monitor["spec"]["podMetricsEndpoints"])[0];
    for field in ["port", "path", "interval", "scrapeTimeout"] {
        assert_eq!(
            endpoint[field], single_endpoint[field],
            "PodMonitor {field}"
        );
    }
    assert!(
        array(&endpoint["relabelings"]).iter().any(|relabeling| {
            relabeling["sourceLabels"] == serde_json::json!(["__meta_kubernetes_pod_name"])
                && relabeling["targetLabel"] == "instance"
        }),
        "the instance label is the pod's name"
    );

    // CloudNativePG: three instances, synchronous replication in the current API.
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    let cluster_spec = &cluster["spec"];
    let instances = cluster_spec["instances"].as_u64().unwrap();
    assert!(instances >= 3, "instances: {instances}");
    for deprecated in ["minSyncReplicas", "maxSyncReplicas"] {
        assert!(
            cluster_spec.get(deprecated).is_none(),
            "{deprecated} is deprecated: use postgresql.synchronous"
        );
    }
    let synchronous = &cluster_spec["postgresql"]["synchronous"];
    assert!(["any", "first"].contains(&string(&synchronous["method"])));
    let number = synchronous["number"].as_u64().unwrap();
    assert!(
        number >= 1 && number < instances,
        "synchronous standbys: {number} of {instances} instances"
    );
    assert_eq!(synchronous["dataDurability"], "required");
    let initdb = &cluster_spec["bootstrap"]["initdb"];
    assert!(initdb["database"].is_string() && initdb["owner"].is_string());
    let pg_max_connections: u64 =
        string(&cluster_spec["postgresql"]["parameters"]["max_connections"])
            .parse()
            .unwrap();
    assert!(
        replicas * max_connections + 10 <= pg_max_connections,
        "{replicas} replicas × database.max_connections {max_connections} must fit in \
         PostgreSQL's max_connections {pg_max_connections}, with room for the operator"
    );

    // Backups through the Barman Cloud Plugin, to the ObjectStore, every night.
    let plugin = array(&cluster_spec["plugins"])
        .iter()
        .find(|plugin| plugin["name"] == "barman-cloud.cloudnative-pg.io")
        .expect("the Barman Cloud Plugin");
    assert_eq!(plugin["isWALArchiver"], true);
    assert_eq!(object_store["apiVersion"], "barmancloud.cnpg.io/v1");
    assert_eq!(
        plugin["parameters"]["barmanObjectName"],
        object_store["metadata"]["name"]
    );
    assert!(object_store["spec"]["retentionPolicy"].is_string());
    assert!(string(&object_store["spec"]["configuration"]["destinationPath"]).starts_with("s3://"));
    assert_eq!(scheduled_backup["apiVersion"], "postgresql.cnpg.io/v1");
    let backup_spec = &scheduled_backup["spec"];
    assert_eq!(backup_spec["cluster"]["name"], cluster["metadata"]["name"]);
    assert_eq!(backup_spec["method"], "plugin");
    assert_eq!(backup_spec["pluginConfiguration"]["name"], plugin["name"]);
    assert_eq!(
        string(&backup_spec["schedule"]).split_whitespace().count(),
        6,
        "CloudNativePG's schedule has six fields, seconds first"
    );

    // The database's PodMonitor selects the cluster's instances.
    let database_monitor = pod_monitors
        .iter()
        .find(|monitor| {
            monitor["spec"]["selector"]["matchLabels"]["cnpg.io/cluster"]
                == cluster["metadata"]["name"]
        })
        .expect("a PodMonitor for the database");
    assert_eq!(
        array(&database_monitor["spec"]["podMetricsEndpoints"])[0]["port"],
        "metrics"
    );

    // kubectl apply -k applies every file, in the single-node variant's namespace.
    assert_eq!(
        kustomization["namespace"],
        single_of("Kustomization")["namespace"]
    );
    let listed: BTreeSet<&str> = array(&kustomization["resources"])
        .iter()
        .map(string)
        .collect();
    let files: BTreeSet<&str> = manifests
        .iter()
        .map(|(file, _)| file.as_str())
        .filter(|file| *file != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files, "ha/kustomization.yaml resources");
}

#[cfg(feature = "system-tests")]
#[test]
fn kubernetes_ha_config_passes_check_config_with_cloudnativepg_secrets() {
    let (relay_toml, config_map_data) = kubernetes_relay_config_in("kubernetes/ha");
    let relay_config = relay_config_toml(&relay_toml);
    let manifests = kubernetes_manifests_in("kubernetes/ha");
    let of_kind = |kind: &str| -> &Value {
        manifests
            .iter()
            .map(|(_, manifest)| manifest)
            .find(|manifest| manifest["kind"] == kind)
            .unwrap_or_else(|| panic!("a {kind}"))
    };
    let deployment = of_kind("Deployment");
    let container = &array(&deployment["spec"]["template"]["spec"]["containers"])[0];
    // The environment as the kubelet builds it from CloudNativePG's secret.
    let environment = deployment_environment(container, of_kind("Cluster"), "samsa-relay-abc12");
    let relay_environment: Vec<(&str, &str)> = environment
        .iter()
        .filter(|(name, _)| name.starts_with("SAMSA_RELAY_"))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();

    // The pod's file system below a temporary root: the ConfigMap's keys in etc/, the
    // Secret's in secrets/, the database's CA in database-ca/.
    let ca_file = relay_config["database"]["ca_file"].as_str().unwrap();
    let (ca_folder, ca_name) = ca_file.rsplit_once('/').unwrap();
    let ca_folder = format!("{ca_folder}/");
    let root = tempfile::tempdir().expect("temporary folder");
    let etc = root.path().join("etc");
    let secrets = root.path().join("secrets");
    let database_ca = root.path().join("database-ca");
    for folder in [&etc, &secrets, &database_ca] {
        std::fs::create_dir_all(folder).unwrap();
    }
    for (key, value) in &config_map_data {
        std::fs::write(etc.join(key), value).unwrap();
    }
    for name in paths_under(&relay_config, KUBERNETES_SECRETS) {
        std::fs::write(secrets.join(&name), test_secret(&name)).unwrap();
    }
    std::fs::write(database_ca.join(ca_name), test_certificate_authority()).unwrap();
    let installed_config = root.path().join("samsa-relay.toml");
    std::fs::write(
        &installed_config,
        rewrite_paths(
            &relay_toml,
            &[
                (KUBERNETES_SECRETS, &secrets),
                (ca_folder.as_str(), &database_ca),
                (CONFIG_FOLDER, &etc),
            ],
        ),
    )
    .unwrap();
    assert_config_valid_with(root.path(), &installed_config, &relay_environment);
}

// ---------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------

#[test]
fn dockerfile_builds_locked_and_runs_as_a_numeric_non_root_user() {
    let dockerfile = std::fs::read_to_string(deploy_path("docker/Dockerfile")).unwrap();
    let instructions = dockerfile_instructions(&dockerfile);
    let of = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(instruction, _)| instruction == keyword)
            .map(|(_, arguments)| arguments.as_str())
            .collect()
    };

    let stages = of("FROM");
    assert_eq!(stages.len(), 2, "a builder and a runtime stage: {stages:?}");
    let builder_image = stages[0]
        .strip_suffix(" AS builder")
        .expect("the first stage is named builder");
    let rust_version = builder_image
        .strip_prefix("rust:")
        .and_then(|tag| tag.split('-').next())
        .expect("the builder is an official rust image");
    assert_eq!(
        rust_version,
        cargo_rust_version(),
        "the builder uses the crate's rust-version"
    );
    assert_eq!(stages[1], "debian:bookworm-slim AS runtime");
    assert!(
        of("RUN")
            .iter()
            .any(|run| run.contains("cargo build --release --locked")),
        "the build must use Cargo.lock as it is"
    );

    // Everything COPY takes from the build context exists in the repository.
    for copy in of("COPY") {
        if copy.starts_with("--from=") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                repository_path(source).exists(),
                "COPY {source}: not in the repository"
            );
        }
    }

    assert!(dockerfile_user_id() > 0, "the image must not run as root");
    assert_eq!(of("EXPOSE"), ["9095"]);
    assert_eq!(of("ENTRYPOINT"), [r#"["samsa-relay"]"#]);
    assert_eq!(
        of("CMD"),
        [r#"["serve", "--config", "/etc/samsa-relay/samsa-relay.toml"]"#]
    );
    // The image's default config is the shipped one.
    assert!(
        of("COPY").contains(&"deploy/samsa-relay.toml /etc/samsa-relay/samsa-relay.toml"),
        "the shipped config is the image's default"
    );
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn repository_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn deploy_path(relative: &str) -> PathBuf {
    repository_path("deploy").join(relative)
}

/// Runs a tool to completion within [`TOOL_DEADLINE`], its output captured in files (a
/// full pipe cannot block it). Kills it, by its own handle, if it overruns.
#[cfg(feature = "system-tests")]
fn run_tool(command: &mut Command) -> Output {
    run_tool_with(command, &[])
}

/// [`run_tool`] with these environment variables set, after the inherited ones that
/// would change the check are removed.
fn run_tool_with(command: &mut Command, environment: &[(&str, &str)]) -> Output {
    let folder = tempfile::tempdir().expect("temporary folder");
    let stdout_path = folder.path().join("stdout");
    let stderr_path = folder.path().join("stderr");
    command
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("stdout file"))
        .stderr(File::create(&stderr_path).expect("stderr file"));
    for variable in INHERITED_VARIABLES_TO_REMOVE {
        command.env_remove(variable);
    }
    for (variable, _) in samsa_relay::config::ENV_OVERRIDES {
        command.env_remove(variable);
    }
    command.env_remove(REPLICA_NAME_VARIABLE);
    for (variable, value) in environment {
        command.env(variable, value);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if started.elapsed() > TOOL_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {TOOL_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read(&stderr_path).unwrap_or_default(),
    }
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        text_of(&output.stdout),
        text_of(&output.stderr)
    )
}

fn assert_succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        describe(output)
    );
}

/// `samsa-relay check-config --config FILE`, run in FOLDER.
#[cfg(feature = "system-tests")]
fn check_config(folder: &Path, config: &Path) -> Output {
    check_config_with(folder, config, &[])
}

/// [`check_config`] with these environment variables set.
fn check_config_with(folder: &Path, config: &Path, environment: &[(&str, &str)]) -> Output {
    run_tool_with(
        Command::new(RELAY_BINARY)
            .arg("check-config")
            .arg("--config")
            .arg(config)
            .current_dir(folder),
        environment,
    )
}

fn assert_config_valid(folder: &Path, config: &Path) {
    assert_config_valid_with(folder, config, &[]);
}

fn assert_config_valid_with(folder: &Path, config: &Path, environment: &[(&str, &str)]) {
    let output = check_config_with(folder, config, environment);
    assert_succeeded("samsa-relay check-config", &output);
    assert_eq!(
        text_of(&output.stdout).trim(),
        format!("{}: valid", config.display())
    );
}

/// Prints every document of the YAML file argv[1] as one JSON list.
#[cfg(feature = "system-tests")]
const YAML_TO_JSON: &str = r#"
import json, sys, yaml
with open(sys.argv[1], encoding="utf-8") as file:
    documents = list(yaml.safe_load_all(file))
json.dump(documents, sys.stdout, default=str)
"#;

/// Parses every document of a YAML file with PyYAML (Debian's python3-yaml) into JSON.
#[cfg(feature = "system-tests")]
fn yaml_documents(path: &Path) -> Vec<Value> {
    // Debian's interpreter first: the package installs the module for it.
    let python = debian_binary("python3", "python3-yaml");
    let output = run_tool(Command::new(&python).arg("-c").arg(YAML_TO_JSON).arg(path));
    if text_of(&output.stderr).contains("No module named 'yaml'") {
        panic!(
            "{} has no yaml module; run scripts/test-all.sh, which installs the Debian \
             package python3-yaml",
            python.display()
        );
    }
    assert_succeeded(&format!("parsing {} as YAML", path.display()), &output);
    let documents: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{}: not JSON from the parser: {error}", path.display()));
    documents
        .into_iter()
        .filter(|document| !document.is_null())
        .collect()
}

/// Every manifest in deploy/kubernetes/, with its file name.
#[cfg(feature = "system-tests")]
fn kubernetes_manifests() -> Vec<(String, Value)> {
    kubernetes_manifests_in("kubernetes")
}

/// Every manifest in deploy/FOLDER/ (not below it), with its file name.
#[cfg(feature = "system-tests")]
fn kubernetes_manifests_in(folder: &str) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_path(folder))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/{folder}/");
    files
        .iter()
        .flat_map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let documents = yaml_documents(path);
            assert_eq!(documents.len(), 1, "{file}: one manifest per file");
            documents
                .into_iter()
                .map(move |document| (file.clone(), document))
        })
        .collect()
}

/// The ConfigMap's relay TOML, and all its keys (file name -> content).
#[cfg(feature = "system-tests")]
fn kubernetes_relay_config() -> (String, BTreeMap<String, String>) {
    kubernetes_relay_config_in("kubernetes")
}

/// [`kubernetes_relay_config`] of the manifests in deploy/FOLDER/.
#[cfg(feature = "system-tests")]
fn kubernetes_relay_config_in(folder: &str) -> (String, BTreeMap<String, String>) {
    let config_map = kubernetes_manifests_in(folder)
        .into_iter()
        .map(|(_, manifest)| manifest)
        .find(|manifest| manifest["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    let data: BTreeMap<String, String> = object(&config_map["data"])
        .iter()
        .map(|(key, value)| (key.clone(), string(value).to_owned()))
        .collect();
    let relay_toml = data
        .get("samsa-relay.toml")
        .expect("the ConfigMap's samsa-relay.toml key")
        .clone();
    (relay_toml, data)
}

fn relay_config_toml(text: &str) -> toml::Value {
    toml::from_str(text).expect("the relay config is TOML")
}

/// The part after PREFIX of every string value in the config that starts with it: the
/// files the relay will read there. Comments are not values, so commented-out keys do not
/// count.
fn paths_under(config: &toml::Value, prefix: &str) -> Vec<String> {
    fn walk(value: &toml::Value, prefix: &str, found: &mut Vec<String>) {
        match value {
            toml::Value::String(text) => {
                if let Some(rest) = text.strip_prefix(prefix) {
                    found.push(rest.to_owned());
                } else if let Some(rest) = text
                    .strip_prefix("sqlite://")
                    .and_then(|path| path.strip_prefix(prefix))
                {
                    found.push(rest.to_owned());
                }
            }
            toml::Value::Array(values) => {
                for value in values {
                    walk(value, prefix, found);
                }
            }
            toml::Value::Table(table) => {
                for value in table.values() {
                    walk(value, prefix, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(config, prefix, &mut found);
    found.sort();
    found.dedup();
    found
}

/// Replaces each absolute folder prefix with a folder below the test's temporary root.
fn rewrite_paths(text: &str, replacements: &[(&str, &Path)]) -> String {
    replacements
        .iter()
        .fold(text.to_owned(), |text, (prefix, folder)| {
            text.replace(prefix, &format!("{}/", folder.display()))
        })
}

/// Asserts that two relay configs are the same but for `[database]` and `[cluster]`: the
/// highly available variant of a deployment must not drift from the single-node one.
fn assert_same_but_database_and_cluster(single: &toml::Value, ha: &toml::Value, what: &str) {
    assert!(
        single.get("cluster").is_none(),
        "the single-node config has no [cluster]"
    );
    let without = |config: &toml::Value| -> toml::Value {
        let mut table = config.as_table().expect("a TOML table").clone();
        table.remove("database");
        table.remove("cluster");
        toml::Value::Table(table)
    };
    assert_eq!(
        without(single),
        without(ha),
        "{what} must differ from the single-node config only in [database] and [cluster]"
    );
}

/// Asserts that a database URL is PostgreSQL's and checks the server's certificate and
/// name (`sslmode=verify-full`).
fn assert_postgres_url_verifies_the_server(url: &str) {
    assert!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "not a PostgreSQL URL: {url}"
    );
    let query = url
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default();
    assert!(
        query.split('&').any(|pair| pair == "sslmode=verify-full"),
        "{url}: sslmode=verify-full checks the server's certificate and name"
    );
}

/// Asserts that the relay reads this environment variable: one of its overrides of a key
/// (`samsa_relay::config::ENV_OVERRIDES`), or a default the config module reads itself
/// (`SAMSA_RELAY_REPLICA_NAME`, in `src/config/cluster.rs`).
fn assert_relay_reads_variable(variable: &str) {
    if samsa_relay::config::ENV_OVERRIDES
        .iter()
        .any(|(name, _)| *name == variable)
    {
        return;
    }
    let mut sources = vec![repository_path("src/config.rs")];
    for entry in std::fs::read_dir(repository_path("src/config")).unwrap() {
        sources.push(entry.unwrap().path());
    }
    let read_call = format!("std::env::var(\"{variable}\")");
    assert!(
        sources.iter().any(|source| std::fs::read_to_string(source)
            .unwrap_or_default()
            .contains(&read_call)),
        "the relay does not read {variable}: not in samsa_relay::config::ENV_OVERRIDES, and \
         no {read_call} in src/config.rs or src/config/"
    );
}

/// A self-signed CA certificate in PEM, standing in for a database server's CA.
fn test_certificate_authority() -> String {
    let mut parameters = rcgen::CertificateParams::new(Vec::<String>::new()).expect("parameters");
    parameters.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    parameters
        .distinguished_name
        .push(rcgen::DnType::CommonName, "samsa-db CA");
    let key = rcgen::KeyPair::generate().expect("a key");
    parameters.self_signed(&key).expect("a certificate").pem()
}

/// A value long enough for every secret the relay checks (32 characters and more).
fn test_secret(name: &str) -> String {
    format!("deploy-test-{name}-0123456789abcdef0123456789abcdef\n")
}

/// The values of every `NAME=value` line of a systemd unit, in order.
fn directive_values(unit: &str, name: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .map(|value| value.trim().to_owned())
        .collect()
}

/// A duration as the relay, Alertmanager and systemd write simple ones: 45s, 1m, 10m.
fn duration(text: &str) -> Duration {
    parse_duration(text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
}

/// The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined and
/// comments dropped.
fn dockerfile_instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued.trim());
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, arguments) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        instructions.push((keyword.to_uppercase(), arguments.trim().to_owned()));
        current.clear();
    }
    instructions
}

/// The numeric user id of the image's USER instruction.
fn dockerfile_user_id() -> u64 {
    let dockerfile = std::fs::read_to_string(deploy_path("docker/Dockerfile")).unwrap();
    let users: Vec<String> = dockerfile_instructions(&dockerfile)
        .into_iter()
        .filter(|(keyword, _)| keyword == "USER")
        .map(|(_, arguments)| arguments)
        .collect();
    assert_eq!(users.len(), 1, "one USER instruction: {users:?}");
    let user = users[0].split(':').next().unwrap();
    user.parse()
        .unwrap_or_else(|_| panic!("USER {user}: Kubernetes' runAsNonRoot needs a numeric id"))
}

/// `rust-version` from Cargo.toml.
fn cargo_rust_version() -> String {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repository_path("Cargo.toml")).unwrap()).unwrap();
    manifest["package"]["rust-version"]
        .as_str()
        .expect("package.rust-version")
        .to_owned()
}

/// The anchor GitHub gives a Markdown heading: lower case, spaces to hyphens, and only
/// letters, digits, hyphens and underscores kept.
#[cfg(feature = "system-tests")]
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|character| match character {
            ' ' => Some('-'),
            '-' | '_' => Some(character),
            _ if character.is_alphanumeric() => Some(character),
            _ => None,
        })
        .collect()
}

/// The container's environment as the kubelet builds it for a pod named POD: values with
/// `$(NAME)` references to earlier variables expanded, the pod's name from the downward
/// API, and the keys of CloudNativePG's secret `<cluster>-app` as the operator writes them
/// (the password with characters that a URL must escape). Any other reference fails.
#[cfg(feature = "system-tests")]
fn deployment_environment(
    container: &Value,
    cluster: &Value,
    pod: &str,
) -> BTreeMap<String, String> {
    let cluster_name = string(&cluster["metadata"]["name"]);
    let initdb = &cluster["spec"]["bootstrap"]["initdb"];
    let (owner, database) = (string(&initdb["owner"]), string(&initdb["database"]));
    // The namespace the kustomization puts everything in.
    let namespace = "samsa";
    let app_secret = format!("{cluster_name}-app");
    let app_key = |key: &str| -> String {
        match key {
            "uri" => format!(
                "postgresql://{owner}:p%2Fq%3Ar%40s0123456789@{cluster_name}-rw.{namespace}:5432/{database}"
            ),
            "username" | "user" => owner.to_owned(),
            "password" => "p/q:r@s0123456789".to_owned(),
            "dbname" => database.to_owned(),
            "host" => format!("{cluster_name}-rw"),
            "port" => "5432".to_owned(),
            other => panic!("{app_secret} has no key {other} the relay should use"),
        }
    };
    let mut environment: BTreeMap<String, String> = BTreeMap::new();
    for variable in array(&container["env"]) {
        let name = string(&variable["name"]).to_owned();
        let value = if let Some(value) = variable["value"].as_str() {
            let mut expanded = String::new();
            let mut rest = value;
            while let Some(start) = rest.find("$(") {
                expanded.push_str(&rest[..start]);
                let end = rest[start..].find(')').expect("$(NAME) closed") + start;
                let reference = &rest[start + 2..end];
                expanded.push_str(environment.get(reference).unwrap_or_else(|| {
                    panic!("{name} refers to {reference}, not defined before it")
                }));
                rest = &rest[end + 1..];
            }
            expanded.push_str(rest);
            expanded
        } else if let Some(secret) = variable["valueFrom"]["secretKeyRef"].as_object() {
            assert_eq!(
                secret["name"], app_secret,
                "{name}: only CloudNativePG's application secret"
            );
            assert!(
                secret
                    .get("optional")
                    .is_none_or(|optional| optional == false),
                "{name}: a pod without it must not start"
            );
            app_key(string(&secret["key"]))
        } else if let Some(field) = variable["valueFrom"]["fieldRef"].as_object() {
            assert_eq!(field["fieldPath"], "metadata.name", "{name}");
            pod.to_owned()
        } else {
            panic!("{name}: an environment variable of an unexpected kind: {variable}");
        };
        environment.insert(name, value);
    }
    environment
}

/// The alerting rules of every group of a rule file.
#[cfg(feature = "system-tests")]
fn alerting_rules(rule_file: &Value) -> Vec<&Value> {
    array(&rule_file["groups"])
        .iter()
        .flat_map(|group| array(&group["rules"]))
        .filter(|rule| rule.get("alert").is_some())
        .collect()
}

/// The receiver amtool routes a label set to.
#[cfg(feature = "system-tests")]
fn route(amtool: &Path, config: &Path, labels: &[String]) -> String {
    let output = run_tool(
        Command::new(amtool)
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", config.display()))
            .args(labels),
    );
    assert_succeeded("amtool config routes test", &output);
    text_of(&output.stdout).trim().to_owned()
}

#[cfg(feature = "system-tests")]
fn assert_labels_select(selector: &Value, pod_labels: &serde_json::Map<String, Value>, what: &str) {
    let selector = object(selector);
    assert!(!selector.is_empty(), "{what}: empty selector");
    for (name, value) in selector {
        assert_eq!(
            pod_labels.get(name),
            Some(value),
            "{what}: selector {name}={value} does not match the pod"
        );
    }
}

#[cfg(feature = "system-tests")]
fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, found {value}"))
}

#[cfg(feature = "system-tests")]
fn object(value: &Value) -> &serde_json::Map<String, Value> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("expected a mapping, found {value}"))
}

#[cfg(feature = "system-tests")]
fn string(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, found {value}"))
}
