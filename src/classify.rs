//! From alert labels to a scope and a suggested level of the communication plan.
//!
//! Three pure steps, each tested on its own:
//! 1. [`alert_scopes`]: one alert's labels -> what it says is down (everything, a
//!    sub-region, or actors).
//! 2. [`summarize`]: the scopes of all firing alerts + the [`Inventory`] -> a
//!    [`ScopeSummary`] per sub-region, with counts. Ids the inventory does not know are
//!    kept and shown, never dropped: an unknown id is still someone who cannot work.
//! 3. [`classify`]: the summary -> the plan's level (1 outage, 2 backup routine in parts of
//!    the organisations, 3 backup routine everywhere and crisis communication) with the
//!    reasons in Swedish. The level is a suggestion; an operator decides.
//!
//! Label values come from monitoring and are untrusted: they are truncated here and made
//! safe for display where they are shown (see `swedish::single_line`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inventory::{ActorKind, Inventory};
use crate::swedish::{count_phrase, join_swedish_list, single_line};

/// How alerts map to actors and incidents. The `[incidents]` section of the configuration (`config::RawIncidents` documents each
/// field); owned here because classification and correlation are what it configures.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentsConfig {
    pub actor_label: String,
    pub subregion_label: String,
    pub scope_label: String,
    pub flap_window: Duration,
    pub broad_subregion_share: f64,
    pub watchdog_alertname: String,
    pub watchdog_timeout: Duration,
}

impl Default for IncidentsConfig {
    /// The documented defaults, the same as an empty `[incidents]` section.
    fn default() -> IncidentsConfig {
        IncidentsConfig {
            actor_label: "actor".to_owned(),
            subregion_label: "subregion".to_owned(),
            scope_label: "scope".to_owned(),
            flap_window: Duration::from_secs(15 * 60),
            broad_subregion_share: 0.5,
            watchdog_alertname: "Watchdog".to_owned(),
            watchdog_timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// Longest label value kept, in characters. Real ids are short; a longer value is noise or
/// an attack and must not blow up a notice or a database row.
pub const MAX_LABEL_VALUE_CHARS: usize = 100;

/// How many unknown ids a reason or a notice names before saying "och N till".
pub const MAX_UNKNOWN_IDS_SHOWN: usize = 10;

/// What one alert says is unavailable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "id")]
pub enum AlertScope {
    /// The whole service (`scope="all"`, or an alert that names no actor or sub-region).
    Everything,
    /// Every actor of one sub-region (the `subregion` label).
    Subregion(String),
    /// One actor (the `actor` label).
    Actor(String),
}

/// The scope of an incident: who is affected, per sub-region, with counts.
///
/// `n_affected` and `n_actors` count actors the inventory knows; unknown ids are listed
/// separately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeSummary {
    /// Everything is down: an alert said so, or every known actor is affected.
    pub whole_service: bool,
    /// Every sub-region of the inventory, in inventory order, affected or not.
    pub subregions: Vec<SubregionScope>,
    /// Actor ids from labels that the inventory does not know, in order of appearance.
    pub unknown_actor_ids: Vec<String>,
    /// Sub-region ids from labels that the inventory does not know.
    pub unknown_subregion_ids: Vec<String>,
    pub n_affected: usize,
    pub n_actors: usize,
}

/// One sub-region's part of a [`ScopeSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubregionScope {
    pub id: String,
    pub name: String,
    /// Ids of the affected actors, in inventory order.
    pub affected: Vec<String>,
    /// Display names of the same actors, same order.
    pub affected_names: Vec<String>,
    /// Whether each of the same actors is a municipality, same order (empty in summaries
    /// stored before it existed: then no name is known to be one).
    #[serde(default)]
    pub affected_kommuner: Vec<bool>,
    pub n_affected: usize,
    pub n_actors: usize,
    pub n_kommuner_affected: usize,
    pub n_kommuner: usize,
    /// The whole sub-region is affected: an alert named it, or all its actors are down.
    pub whole: bool,
}

/// The communication plan's activity levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// "Avbrott i IT-tjänsten": notices to support and IT organisations.
    One,
    /// "Övergång till reservrutin i delar av verksamheterna": decided at sub-regional level.
    Two,
    /// "Övergång till reservrutin i alla verksamheter": decided by the chair or vice chair
    /// of the management council; crisis communication.
    Three,
}

/// A level with the reasons for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub level: Level,
    /// The chair and vice chair of the management council must be told (level 3).
    pub crisis: bool,
    /// Why, in Swedish, for the operator and the notices.
    pub reasons: Vec<String>,
}

impl Classification {
    /// This classification with the operator's level: crisis goes with level 3; the
    /// reasons (why the relay suggested what it did) stay.
    pub fn at_level(&self, level: Level) -> Classification {
        Classification {
            level,
            crisis: level == Level::Three,
            reasons: self.reasons.clone(),
        }
    }
}

/// Reads what one alert says is down. The actor label may hold several ids separated by
/// commas; each becomes one scope.
pub fn alert_scopes(
    labels: &crate::alertmanager::LabelMap,
    config: &IncidentsConfig,
) -> Vec<AlertScope> {
    let scope_value = labels
        .get(&config.scope_label)
        .map(|value| value.trim())
        .unwrap_or("");
    if scope_value.eq_ignore_ascii_case("all") {
        return vec![AlertScope::Everything];
    }
    let actor_ids = label_ids(labels.get(&config.actor_label));
    if !actor_ids.is_empty() {
        return actor_ids.into_iter().map(AlertScope::Actor).collect();
    }
    let subregion_ids = label_ids(labels.get(&config.subregion_label));
    if !subregion_ids.is_empty() {
        return subregion_ids
            .into_iter()
            .map(AlertScope::Subregion)
            .collect();
    }
    // An alert about SAMSA that names nobody in particular is about the service itself.
    vec![AlertScope::Everything]
}

/// Combines the scopes of all firing alerts with the inventory.
pub fn summarize(scopes: &[AlertScope], inventory: &Inventory) -> ScopeSummary {
    let mut everything = false;
    let mut affected_actor_ids = BTreeSet::new();
    let mut targeted_subregion_ids = BTreeSet::new();
    let mut unknown_actor_ids: Vec<String> = Vec::new();
    let mut unknown_subregion_ids: Vec<String> = Vec::new();
    for scope in scopes {
        match scope {
            AlertScope::Everything => everything = true,
            AlertScope::Subregion(id) => {
                if inventory.subregion(id).is_some() {
                    targeted_subregion_ids.insert(id.as_str());
                } else {
                    push_unique(
                        &mut unknown_subregion_ids,
                        truncate_chars(id, MAX_LABEL_VALUE_CHARS),
                    );
                }
            }
            AlertScope::Actor(id) => {
                if inventory.actor(id).is_some() {
                    affected_actor_ids.insert(id.as_str());
                } else {
                    push_unique(
                        &mut unknown_actor_ids,
                        truncate_chars(id, MAX_LABEL_VALUE_CHARS),
                    );
                }
            }
        }
    }

    let mut subregions = Vec::with_capacity(inventory.subregions().len());
    for subregion in inventory.subregions() {
        let targeted = everything || targeted_subregion_ids.contains(subregion.id.as_str());
        let mut subregion_scope = SubregionScope {
            id: subregion.id.clone(),
            name: subregion.name.clone(),
            affected: Vec::new(),
            affected_names: Vec::new(),
            affected_kommuner: Vec::new(),
            n_affected: 0,
            n_actors: 0,
            n_kommuner_affected: 0,
            n_kommuner: 0,
            whole: false,
        };
        for actor in inventory.actors_in(&subregion.id) {
            let is_kommun = actor.kind == ActorKind::Kommun;
            subregion_scope.n_actors += 1;
            subregion_scope.n_kommuner += usize::from(is_kommun);
            if targeted || affected_actor_ids.contains(actor.id.as_str()) {
                subregion_scope.affected.push(actor.id.clone());
                subregion_scope.affected_names.push(actor.name.clone());
                subregion_scope.affected_kommuner.push(is_kommun);
                subregion_scope.n_affected += 1;
                subregion_scope.n_kommuner_affected += usize::from(is_kommun);
            }
        }
        subregion_scope.whole = targeted
            || (subregion_scope.n_actors > 0
                && subregion_scope.n_affected == subregion_scope.n_actors);
        subregions.push(subregion_scope);
    }

    let n_affected = subregions
        .iter()
        .map(|subregion| subregion.n_affected)
        .sum();
    let n_actors = inventory.actors().len();
    ScopeSummary {
        whole_service: everything || (n_actors > 0 && n_affected == n_actors),
        subregions,
        unknown_actor_ids,
        unknown_subregion_ids,
        n_affected,
        n_actors,
    }
}

/// Suggests the plan's level for a scope. `broad_subregion_share` is the share of a
/// sub-region's actors (in (0, 1]) from which the sub-region counts as broadly affected.
pub fn classify(summary: &ScopeSummary, broad_subregion_share: f64) -> Classification {
    let mut level = Level::One;
    let mut reasons = Vec::new();

    // "Flertalet aktörer" in the plan: strictly more than half of all actors.
    let majority_affected = summary.n_affected * 2 > summary.n_actors;
    if summary.whole_service {
        level = Level::Three;
        reasons.push("Hela tjänsten är otillgänglig".to_owned());
    } else if majority_affected {
        level = Level::Three;
        reasons.push(format!(
            "{} av {} aktörer påverkas: mer än hälften",
            summary.n_affected, summary.n_actors
        ));
    } else if summary.n_affected > 0 {
        reasons.push(format!(
            "{} av {} aktörer påverkas",
            summary.n_affected, summary.n_actors
        ));
    }

    if !summary.whole_service {
        for subregion in &summary.subregions {
            if subregion.n_affected == 0 && !subregion.whole {
                continue;
            }
            if subregion.whole {
                level = level.max(Level::Two);
                reasons.push(format!("Hela {} påverkas", subregion.name));
            } else if subregion.n_actors > 0
                && subregion.n_affected as f64 / subregion.n_actors as f64 >= broad_subregion_share
            {
                level = level.max(Level::Two);
                let kommuner = if subregion.n_kommuner_affected == subregion.n_kommuner {
                    format!("alla {} kommuner", subregion.n_kommuner)
                } else {
                    format!(
                        "{} av {} kommuner",
                        subregion.n_kommuner_affected, subregion.n_kommuner
                    )
                };
                reasons.push(format!(
                    "{} av {} aktörer i {} påverkas ({kommuner})",
                    subregion.n_affected, subregion.n_actors, subregion.name
                ));
            }
        }
    }

    if !summary.unknown_actor_ids.is_empty() {
        reasons.push(format!(
            "{}: {}",
            count_phrase(
                summary.unknown_actor_ids.len(),
                "okänd aktör",
                "okända aktörer"
            ),
            shown_ids(&summary.unknown_actor_ids)
        ));
    }
    if !summary.unknown_subregion_ids.is_empty() {
        reasons.push(format!(
            "{}: {}",
            count_phrase(
                summary.unknown_subregion_ids.len(),
                "okänd delregion",
                "okända delregioner"
            ),
            shown_ids(&summary.unknown_subregion_ids)
        ));
    }
    if reasons.is_empty() {
        reasons.push("Ingen aktör påverkas".to_owned());
    }

    Classification {
        level,
        crisis: level == Level::Three,
        reasons,
    }
}

impl Level {
    /// 1, 2 or 3, as in the plan.
    pub fn as_number(self) -> u8 {
        match self {
            Level::One => 1,
            Level::Two => 2,
            Level::Three => 3,
        }
    }

    pub fn from_number(number: u8) -> Option<Level> {
        match number {
            1 => Some(Level::One),
            2 => Some(Level::Two),
            3 => Some(Level::Three),
            _ => None,
        }
    }
}

/// A level equals its number in the plan (`notice.level == 3`).
impl PartialEq<u8> for Level {
    fn eq(&self, number: &u8) -> bool {
        self.as_number() == *number
    }
}

/// Serialized as the number 1, 2 or 3.
impl Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.as_number())
    }
}

/// Accepts 1, 2, 3 or "1", "2", "3" (form fields arrive as text).
impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Level, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumberOrText {
            Number(u64),
            Text(String),
        }
        let number = match NumberOrText::deserialize(deserializer)? {
            NumberOrText::Number(number) => u8::try_from(number).ok(),
            NumberOrText::Text(text) => text.trim().parse::<u8>().ok(),
        };
        number
            .and_then(Level::from_number)
            .ok_or_else(|| serde::de::Error::custom("expected level 1, 2 or 3"))
    }
}

/// The ids in one label value: comma-separated, trimmed, empties skipped, duplicates
/// dropped, each cut to [`MAX_LABEL_VALUE_CHARS`].
fn label_ids(value: Option<&str>) -> Vec<String> {
    let mut ids = Vec::new();
    for part in value.unwrap_or("").split(',') {
        let id = part.trim();
        if !id.is_empty() {
            // Cut to size, then trim again: the cut may end at whitespace inside the id.
            let cut = truncate_chars(id, MAX_LABEL_VALUE_CHARS);
            push_unique(&mut ids, cut.trim_end().to_owned());
        }
    }
    ids
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// Up to [`MAX_UNKNOWN_IDS_SHOWN`] ids made safe for display, then "och N till".
pub fn shown_ids(ids: &[String]) -> String {
    let mut shown: Vec<String> = ids
        .iter()
        .take(MAX_UNKNOWN_IDS_SHOWN)
        .map(|id| single_line(id, MAX_LABEL_VALUE_CHARS))
        .collect();
    if ids.len() > MAX_UNKNOWN_IDS_SHOWN {
        shown.push(format!("{} till", ids.len() - MAX_UNKNOWN_IDS_SHOWN));
    }
    join_swedish_list(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> crate::alertmanager::LabelMap {
        pairs.iter().copied().collect()
    }

    fn actor(id: &str) -> AlertScope {
        AlertScope::Actor(id.to_owned())
    }

    fn subregion(id: &str) -> AlertScope {
        AlertScope::Subregion(id.to_owned())
    }

    /// The first `count` actors of a sub-region, in inventory order.
    fn first_actors_of(inventory: &Inventory, subregion_id: &str, count: usize) -> Vec<AlertScope> {
        inventory
            .actors_in(subregion_id)
            .take(count)
            .map(|found| actor(&found.id))
            .collect()
    }

    #[test]
    fn labels_become_scopes() {
        let config = IncidentsConfig::default();
        let long_id = "x".repeat(10_000);
        type Case<'label> = (Vec<(&'label str, &'label str)>, Vec<AlertScope>);
        let cases: Vec<Case> = vec![
            (vec![], vec![AlertScope::Everything]),
            (
                vec![("alertname", "SamsaDown")],
                vec![AlertScope::Everything],
            ),
            (
                vec![("scope", "all"), ("actor", "kommun-ale")],
                vec![AlertScope::Everything],
            ),
            (vec![("scope", " ALL ")], vec![AlertScope::Everything]),
            (
                vec![("scope", "partial"), ("actor", "kommun-ale")],
                vec![actor("kommun-ale")],
            ),
            (
                vec![("actor", "kommun-ale"), ("subregion", "goteborg")],
                vec![actor("kommun-ale")],
            ),
            (
                vec![("actor", "kommun-ale, kommun-lerum,,kommun-ale")],
                vec![actor("kommun-ale"), actor("kommun-lerum")],
            ),
            (
                vec![("subregion", "skaraborg")],
                vec![subregion("skaraborg")],
            ),
            (
                vec![("actor", " "), ("subregion", "skaraborg")],
                vec![subregion("skaraborg")],
            ),
            (vec![("actor", ",")], vec![AlertScope::Everything]),
            (
                vec![("actor", long_id.as_str())],
                vec![actor(&"x".repeat(100))],
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                alert_scopes(&labels(&pairs), &config),
                expected,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn label_names_come_from_the_config() {
        let config = IncidentsConfig {
            actor_label: "organisation".to_owned(),
            subregion_label: "region".to_owned(),
            scope_label: "extent".to_owned(),
            ..IncidentsConfig::default()
        };
        assert_eq!(
            alert_scopes(&labels(&[("organisation", "kommun-ale")]), &config),
            vec![actor("kommun-ale")]
        );
        assert_eq!(
            alert_scopes(&labels(&[("region", "fyrbodal")]), &config),
            vec![subregion("fyrbodal")]
        );
        assert_eq!(
            alert_scopes(
                &labels(&[("extent", "all"), ("region", "fyrbodal")]),
                &config
            ),
            vec![AlertScope::Everything]
        );
        assert_eq!(
            alert_scopes(&labels(&[("actor", "kommun-ale")]), &config),
            vec![AlertScope::Everything]
        );
    }

    #[test]
    fn summary_counts_per_subregion() {
        let inventory = Inventory::default_samsa();
        let summary = summarize(
            &[
                actor("kommun-uddevalla"),
                actor("sjukhus-nal"),
                actor("kommun-uddevalla"),
                subregion("skaraborg"),
                actor("kommun-atlantis"),
                subregion("lappland"),
                actor("kommun-atlantis"),
            ],
            &inventory,
        );
        assert!(!summary.whole_service);
        assert_eq!(summary.n_actors, 67);
        assert_eq!(summary.n_affected, 2 + 20);
        assert_eq!(summary.unknown_actor_ids, ["kommun-atlantis"]);
        assert_eq!(summary.unknown_subregion_ids, ["lappland"]);

        let fyrbodal = &summary.subregions[0];
        assert_eq!(fyrbodal.id, "fyrbodal");
        assert_eq!(fyrbodal.affected, ["kommun-uddevalla", "sjukhus-nal"]);
        assert_eq!(fyrbodal.affected_names, ["Uddevalla", "NU-sjukvården, NÄL"]);
        assert_eq!((fyrbodal.n_affected, fyrbodal.n_actors), (2, 17));
        assert_eq!((fyrbodal.n_kommuner_affected, fyrbodal.n_kommuner), (1, 14));
        assert!(!fyrbodal.whole);

        let goteborg = &summary.subregions[1];
        assert_eq!((goteborg.n_affected, goteborg.whole), (0, false));

        let skaraborg = &summary.subregions[2];
        assert_eq!((skaraborg.n_affected, skaraborg.n_actors), (20, 20));
        assert_eq!(
            (skaraborg.n_kommuner_affected, skaraborg.n_kommuner),
            (15, 15)
        );
        assert!(skaraborg.whole);
    }

    #[test]
    fn everything_affects_every_actor() {
        let inventory = Inventory::default_samsa();
        let summary = summarize(&[AlertScope::Everything, actor("kommun-ale")], &inventory);
        assert!(summary.whole_service);
        assert_eq!(summary.n_affected, 67);
        assert!(summary.subregions.iter().all(|subregion| subregion.whole));
    }

    #[test]
    fn every_actor_named_one_by_one_is_the_whole_service() {
        let inventory = Inventory::default_samsa();
        let scopes: Vec<AlertScope> = inventory
            .actors()
            .iter()
            .map(|found| actor(&found.id))
            .collect();
        assert!(summarize(&scopes, &inventory).whole_service);
        assert!(!summarize(&scopes[1..], &inventory).whole_service);
    }

    #[test]
    fn an_empty_scope_affects_nobody() {
        let summary = summarize(&[], &Inventory::default_samsa());
        assert_eq!(summary.n_affected, 0);
        assert!(!summary.whole_service);
        assert!(summary.subregions.iter().all(|subregion| !subregion.whole));
        let classification = classify(&summary, 0.5);
        assert_eq!(classification.level, Level::One);
        assert_eq!(classification.reasons, ["Ingen aktör påverkas"]);
    }

    #[test]
    fn levels_follow_the_plan_at_every_boundary() {
        let inventory = Inventory::default_samsa();
        // Fyrbodal has 17 actors, Göteborgsregionen 19, Skaraborg 20, Södra Älvsborg 11;
        // 67 in all, so 33 is not more than half and 34 is.
        let half_of_skaraborg = first_actors_of(&inventory, "skaraborg", 10);
        let under_half_of_skaraborg = first_actors_of(&inventory, "skaraborg", 9);
        let mut thirty_three = first_actors_of(&inventory, "skaraborg", 20);
        thirty_three.extend(first_actors_of(&inventory, "sodra-alvsborg", 11));
        thirty_three.extend(first_actors_of(&inventory, "fyrbodal", 2));
        let mut thirty_four = thirty_three.clone();
        thirty_four.push(actor("primarvard-goteborg"));

        struct Case {
            name: &'static str,
            scopes: Vec<AlertScope>,
            share: f64,
            level: Level,
            first_reason: &'static str,
        }
        let cases = vec![
            Case {
                name: "one actor",
                scopes: vec![actor("kommun-tanum")],
                share: 0.5,
                level: Level::One,
                first_reason: "1 av 67 aktörer påverkas",
            },
            Case {
                name: "share below the threshold",
                scopes: under_half_of_skaraborg.clone(),
                share: 0.5,
                level: Level::One,
                first_reason: "9 av 67 aktörer påverkas",
            },
            Case {
                name: "share exactly at the threshold is broad",
                scopes: half_of_skaraborg.clone(),
                share: 0.5,
                level: Level::Two,
                first_reason: "10 av 67 aktörer påverkas",
            },
            Case {
                name: "a stricter threshold",
                scopes: half_of_skaraborg,
                share: 0.75,
                level: Level::One,
                first_reason: "10 av 67 aktörer påverkas",
            },
            Case {
                name: "threshold equality with a decimal share",
                scopes: first_actors_of(&inventory, "skaraborg", 6),
                share: 0.3,
                level: Level::Two,
                first_reason: "6 av 67 aktörer påverkas",
            },
            Case {
                name: "a whole sub-region by label",
                scopes: vec![subregion("sodra-alvsborg")],
                share: 1.0,
                level: Level::Two,
                first_reason: "11 av 67 aktörer påverkas",
            },
            Case {
                name: "exactly half of all actors is not more than half",
                scopes: first_actors_of(&inventory, "skaraborg", 20)
                    .into_iter()
                    .chain(first_actors_of(&inventory, "sodra-alvsborg", 11))
                    .chain(first_actors_of(&inventory, "fyrbodal", 2))
                    .collect(),
                share: 1.0,
                level: Level::Two,
                first_reason: "33 av 67 aktörer påverkas",
            },
            Case {
                name: "more than half of all actors",
                scopes: thirty_four,
                share: 1.0,
                level: Level::Three,
                first_reason: "34 av 67 aktörer påverkas: mer än hälften",
            },
            Case {
                name: "the whole service",
                scopes: vec![AlertScope::Everything],
                share: 0.5,
                level: Level::Three,
                first_reason: "Hela tjänsten är otillgänglig",
            },
            Case {
                name: "only unknown ids",
                scopes: vec![actor("kommun-xyz")],
                share: 0.5,
                level: Level::One,
                first_reason: "1 okänd aktör: kommun-xyz",
            },
        ];
        for case in cases {
            let summary = summarize(&case.scopes, &inventory);
            let classification = classify(&summary, case.share);
            assert_eq!(classification.level, case.level, "{}", case.name);
            assert_eq!(
                classification.crisis,
                case.level == Level::Three,
                "{}",
                case.name
            );
            assert_eq!(
                classification.reasons[0], case.first_reason,
                "{}",
                case.name
            );
        }
        // Exactly half of 66 would need an even total; check the arithmetic directly too.
        let exactly_half = ScopeSummary {
            whole_service: false,
            subregions: Vec::new(),
            unknown_actor_ids: Vec::new(),
            unknown_subregion_ids: Vec::new(),
            n_affected: 33,
            n_actors: 66,
        };
        assert_eq!(classify(&exactly_half, 0.5).level, Level::One);
        let one_more = ScopeSummary {
            n_affected: 34,
            ..exactly_half
        };
        assert_eq!(classify(&one_more, 0.5).level, Level::Three);
    }

    #[test]
    fn reasons_name_subregions_and_unknown_ids() {
        let inventory = Inventory::default_samsa();
        let mut scopes = first_actors_of(&inventory, "fyrbodal", 12);
        scopes.push(subregion("skaraborg"));
        scopes.push(actor("kommun-xyz"));
        scopes.push(actor("kommun-abc"));
        scopes.push(subregion("lappland"));
        let classification = classify(&summarize(&scopes, &inventory), 0.5);
        assert_eq!(classification.level, Level::Two);
        assert!(!classification.crisis);
        assert_eq!(
            classification.reasons,
            [
                "32 av 67 aktörer påverkas",
                "12 av 17 aktörer i Fyrbodal påverkas (12 av 14 kommuner)",
                "Hela Skaraborg påverkas",
                "2 okända aktörer: kommun-xyz och kommun-abc",
                "1 okänd delregion: lappland",
            ]
        );
    }

    #[test]
    fn many_unknown_ids_are_counted_after_the_first_ten() {
        let scopes: Vec<AlertScope> = (0..25)
            .map(|index| actor(&format!("okand-{index}")))
            .collect();
        let classification = classify(&summarize(&scopes, &Inventory::default_samsa()), 0.5);
        assert_eq!(
            classification.reasons[0],
            "25 okända aktörer: okand-0, okand-1, okand-2, okand-3, okand-4, okand-5, okand-6, okand-7, okand-8, okand-9 och 15 till"
        );
    }

    #[test]
    fn levels_serialize_as_numbers_and_parse_from_text() {
        assert_eq!(serde_json::to_string(&Level::Two).unwrap(), "2");
        for text in ["3", "\"3\""] {
            assert_eq!(serde_json::from_str::<Level>(text).unwrap(), Level::Three);
        }
        for text in ["0", "4", "\"x\"", "-1"] {
            assert!(serde_json::from_str::<Level>(text).is_err(), "{text}");
        }
        let classification = Classification {
            level: Level::One,
            crisis: false,
            reasons: vec!["1 av 67 aktörer påverkas".to_owned()],
        };
        let json = serde_json::to_string(&classification).unwrap();
        assert_eq!(
            json,
            r#"{"level":1,"crisis":false,"reasons":["1 av 67 aktörer påverkas"]}"#
        );
        assert_eq!(
            serde_json::from_str::<Classification>(&json).unwrap(),
            classification
        );
    }

    #[test]
    fn summaries_round_trip_through_json() {
        let summary = summarize(
            &[actor("kommun-ale"), actor("x<y")],
            &Inventory::default_samsa(),
        );
        let json = serde_json::to_string(&summary).unwrap();
        assert_eq!(
            serde_json::from_str::<ScopeSummary>(&json).unwrap(),
            summary
        );
    }
}
