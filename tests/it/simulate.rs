//! `samsa-relay simulate`: the rehearsal command, run as a person would run it, on the
//! example payloads shipped in deploy/examples/.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_samsa-relay"))
        .arg("simulate")
        .arg("--config")
        .arg(repo("deploy/samsa-relay.toml"))
        .args(args)
        .env_remove("SAMSA_RELAY_DATABASE_URL")
        .output()
        .expect("samsa-relay runs")
}

#[test]
fn a_rehearsal_shows_the_incident_the_level_and_every_notice() {
    let payloads = [
        "deploy/examples/01-one-actor-firing.json",
        "deploy/examples/02-fyrbodal-firing.json",
        "deploy/examples/03-all-resolved.json",
    ]
    .map(|path| repo(path).display().to_string());
    let output = simulate(&payloads.each_ref().map(String::as_str));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "Incident 1 (ny): pågår",
        "Föreslagen nivå: 1",
        "Föreslagen nivå: 2",
        "Hela Fyrbodal påverkas",
        "Utkast skapat: initial",
        "Utkast reviderat: initial",
        "Utkast återkallat:",
        "--- E-post, ämne ---",
        "--- Inloggningssidan ---",
        "--- IT-Nytt, rubrik ---",
        "Driftstörning i SAMSA – kommunen Trollhättan",
        "28 november 2026 kl. 05:12",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn json_output_carries_every_step_and_the_crisis_notice() {
    let output = simulate(&[
        "--json",
        &repo("deploy/examples/whole-service-firing.json")
            .display()
            .to_string(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Value = serde_json::from_slice(&output.stdout).unwrap();
    let step = &steps[0];
    assert_eq!(step["incident_id"], 1);
    assert_eq!(step["level"], 3);
    assert_eq!(step["crisis"], true);
    let rendered = &step["drafts"][0]["rendered"];
    assert!(
        rendered["crisis_text"]
            .as_str()
            .unwrap()
            .contains("Ledningsråd")
    );
    assert!(
        rendered["email_html"]
            .as_str()
            .unwrap()
            .starts_with("<!DOCTYPE html>")
    );
}

#[test]
fn a_bad_payload_is_named_with_its_problem() {
    let folder = tempfile::tempdir().unwrap();
    let bad = folder.path().join("bad.json");
    std::fs::write(&bad, r#"{"version": "4", "alerts": []}"#).unwrap();
    let output = simulate(&[&bad.display().to_string()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("groupKey"),
        "{stderr}"
    );
}
