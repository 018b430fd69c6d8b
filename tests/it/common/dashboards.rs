//! The Grafana dashboards in `dashboards/`: their panels, queries and variables as Grafana
//! reads them, and (system tier) every query run through a real Prometheus.

use serde_json::Value;

#[cfg(feature = "system-tests")]
use std::time::Duration;

#[cfg(feature = "system-tests")]
use super::prometheus::Prometheus;

/// A dashboard of `dashboards/` (by file name without `.json`), parsed.
pub fn load_dashboard(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dashboards")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// Every panel of a dashboard, rows and the panels inside collapsed rows included.
pub fn dashboard_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels list") {
        panels.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
    }
    panels
}

/// One query of one panel.
#[derive(Debug, Clone)]
#[cfg(feature = "system-tests")]
pub struct PanelQuery {
    pub panel_title: String,
    pub ref_id: String,
    /// The expression as written, with Grafana's variables.
    pub expr: String,
    pub legend: String,
}

/// Every PromQL query of a dashboard's panels.
#[cfg(feature = "system-tests")]
pub fn dashboard_queries(dashboard: &Value) -> Vec<PanelQuery> {
    dashboard_panels(dashboard)
        .into_iter()
        .filter(|panel| panel["type"] != "row")
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |target| PanelQuery {
                    panel_title: title.clone(),
                    ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                    legend: target["legendFormat"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                })
        })
        .collect()
}

/// The names of a dashboard's template variables.
pub fn dashboard_variables(dashboard: &Value) -> Vec<String> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("a templating list")
        .iter()
        .map(|variable| {
            variable["name"]
                .as_str()
                .expect("a variable name")
                .to_owned()
        })
        .collect()
}

/// `expr` as Grafana would send it with every variable set to All: the dashboard's own
/// variables become `.*` (their allValue), and Grafana's interval variables fixed values
/// that suit a Prometheus scraping every second.
#[cfg(feature = "system-tests")]
pub fn expand_dashboard_variables(expr: &str, variables: &[String]) -> String {
    let mut expanded = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("${__interval}", "15s")
        .replace("$__range", "1h")
        .replace("${__range}", "1h");
    // Longest names first, so that $instance is not read as $inst + "ance".
    let mut names: Vec<&String> = variables.iter().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    for name in names {
        expanded = expanded
            .replace(&format!("${{{name}}}"), ".*")
            .replace(&format!("${name}"), ".*");
    }
    expanded
}

/// `label_values(SELECTOR, LABEL)`, a query variable's definition, split into its selector
/// and label.
pub fn label_values_call(definition: &str) -> Option<(String, String)> {
    let inner = definition
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_owned(), label.trim().to_owned()))
}

/// The labels a legend format names, as in `{{channel}} p99`.
#[cfg(feature = "system-tests")]
pub fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim().to_owned())
        .collect()
}

/// Runs every query variable and every panel query of dashboard `name` (with All chosen)
/// through `prometheus` and returns how many panel queries ran and what failed: a query
/// Prometheus refuses, a variable without values (or whose `instance` lacks
/// `relay_instance`), a query without series (polled until `deadline`) unless
/// `no_data_expected` lists it as (dashboard, panel title, refId), a listed one that does
/// return series, and a legend naming a label its series lack.
#[cfg(feature = "system-tests")]
pub async fn dashboard_query_failures(
    prometheus: &Prometheus,
    name: &str,
    no_data_expected: &[(&str, &str, &str)],
    relay_instance: &str,
    deadline: std::time::Instant,
) -> (usize, Vec<String>) {
    let dashboard = load_dashboard(name);
    let variables = dashboard_variables(&dashboard);
    let mut failures = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if variable["type"] != "query" {
            continue;
        }
        let definition = variable["definition"].as_str().expect("a definition");
        let (selector, label) = label_values_call(definition).expect("label_values");
        let selector = expand_dashboard_variables(&selector, &variables);
        let values = prometheus.label_values(&selector, &label).await;
        if values.is_empty() {
            failures.push(format!("{name}: variable {}: no values", variable["name"]));
        }
        if variable["name"] == "instance" && !values.iter().any(|value| value == relay_instance) {
            failures.push(format!(
                "{name}: $instance lacks {relay_instance}: {values:?}"
            ));
        }
    }
    let queries = dashboard_queries(&dashboard);
    for query in &queries {
        let expr = expand_dashboard_variables(&query.expr, &variables);
        let expected_empty =
            no_data_expected.contains(&(name, query.panel_title.as_str(), query.ref_id.as_str()));
        let at = format!("{name}: {:?} {}: {expr}", query.panel_title, query.ref_id);
        let answer = loop {
            match prometheus.query(&expr).await {
                Err(error) => break Err(error),
                Ok(series) if !series.is_empty() || expected_empty => break Ok(series),
                Ok(series) if std::time::Instant::now() > deadline => break Ok(series),
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        match answer {
            Err(error) => failures.push(format!("{at}: Prometheus refused it: {error}")),
            Ok(series) if series.is_empty() && !expected_empty => {
                failures.push(format!("{at}: no series"))
            }
            Ok(series) if !series.is_empty() && expected_empty => failures.push(format!(
                "{at}: returns series now; take it out of the no-data list"
            )),
            Ok(series) => {
                for label in legend_labels(&query.legend) {
                    if let Some(without) = series
                        .iter()
                        .find(|one| one["metric"].get(&label).is_none())
                    {
                        failures.push(format!(
                            "{at}: the legend {:?} names {label}, which {} lacks",
                            query.legend, without["metric"]
                        ));
                    }
                }
            }
        }
    }
    (queries.len(), failures)
}
