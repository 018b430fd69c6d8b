//! Subscriptions to the notices, the plan's third audience ("prenumeranter av
//! nyhetsbrev"): what a subscriber chose, whether a notice concerns them, and who a
//! publication reaches. Pure: no I/O, no storage; `subscribers.rs` is the service and
//! `storage::Subscriptions` the state.
//!
//! A subscriber chooses "all disruptions", or organisations and sub-regions of the
//! inventory, optionally only from a level of the plan upwards ([`Choices`]). A notice
//! reaches, at its publication ([`targets`]):
//!
//! - every confirmed subscriber whose choices meet the incident's scope: all
//!   disruptions, a chosen organisation affected, or a chosen sub-region touched (one of
//!   its organisations affected), at or above their level;
//! - every confirmed subscriber when the whole service is down, whatever they chose;
//! - every confirmed subscriber who got an earlier notice of the incident, even if the
//!   scope has shrunk or the level dropped since, so that nobody who heard of an outage
//!   misses its update or its resolution.
//!
//! Each person once, however many of their choices match. Subscribers are people in the
//! outbox only as `subscriber:ID` ([`recipient`]): the address is looked up when the mail
//! is sent, so that deleting a subscriber leaves no address behind in the outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::classify::{Level, ScopeSummary};
use crate::inventory::Inventory;

/// How subscriptions are kept: the `[subscriptions]` section of the configuration
/// (`config::RawSubscriptions` documents each key); owned here, which it configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionsConfig {
    /// How long a confirmation link works; an unconfirmed request is purged after it.
    pub confirm_ttl: std::time::Duration,
    /// How long an ended (unsubscribed or suspended) subscription is kept before it is
    /// purged.
    pub retention: std::time::Duration,
    /// Permanent delivery failures in a row after which a subscription is suspended.
    pub suspend_after_failures: u32,
}

impl Default for SubscriptionsConfig {
    fn default() -> SubscriptionsConfig {
        SubscriptionsConfig {
            confirm_ttl: std::time::Duration::from_secs(48 * 3600),
            retention: std::time::Duration::from_secs(30 * 24 * 3600),
            suspend_after_failures: 3,
        }
    }
}

/// What a subscriber chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices {
    /// Every disruption, whatever its scope.
    pub all: bool,
    /// Actor ids of the inventory, in inventory order.
    pub actors: Vec<String>,
    /// Sub-region ids of the inventory, in inventory order.
    pub subregions: Vec<String>,
    /// Only notices published at this level of the plan or above (1, 2 or 3). Updates of
    /// an incident the subscriber already heard of come whatever their level.
    pub min_level: u8,
}

impl Default for Choices {
    fn default() -> Choices {
        Choices {
            all: true,
            actors: Vec::new(),
            subregions: Vec::new(),
            min_level: 1,
        }
    }
}

/// Why a choice was refused: shown on the public page, so in Swedish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoicesProblem {
    #[error("Välj minst en organisation eller delregion, eller alla störningar.")]
    Empty,
    #[error("Valet innehåller en organisation eller delregion som inte finns.")]
    Unknown,
    #[error("Välj nivå 1, 2 eller 3.")]
    Level,
}

impl Choices {
    /// Checks and orders choices against the inventory: known ids only, each once, in
    /// inventory order; with `all`, the lists are dropped.
    pub fn checked(
        all: bool,
        actors: &[String],
        subregions: &[String],
        min_level: u8,
        inventory: &Inventory,
    ) -> Result<Choices, ChoicesProblem> {
        if Level::from_number(min_level).is_none() {
            return Err(ChoicesProblem::Level);
        }
        let actors: BTreeSet<&str> = actors.iter().map(|id| id.trim()).collect();
        let subregions: BTreeSet<&str> = subregions.iter().map(|id| id.trim()).collect();
        if actors.iter().any(|id| inventory.actor(id).is_none())
            || subregions
                .iter()
                .any(|id| inventory.subregion(id).is_none())
        {
            return Err(ChoicesProblem::Unknown);
        }
        if all {
            return Ok(Choices {
                all: true,
                actors: Vec::new(),
                subregions: Vec::new(),
                min_level,
            });
        }
        if actors.is_empty() && subregions.is_empty() {
            return Err(ChoicesProblem::Empty);
        }
        Ok(Choices {
            all: false,
            actors: inventory
                .actors()
                .iter()
                .filter(|actor| actors.contains(actor.id.as_str()))
                .map(|actor| actor.id.clone())
                .collect(),
            subregions: inventory
                .subregions()
                .iter()
                .filter(|subregion| subregions.contains(subregion.id.as_str()))
                .map(|subregion| subregion.id.clone())
                .collect(),
            min_level,
        })
    }

    /// Why a notice at `level` about `summary` concerns this subscriber; empty when it
    /// does not. Earlier notices of the same incident are [`targets`]' concern.
    pub fn reasons(&self, summary: &ScopeSummary, level: Level) -> Vec<Reason> {
        if summary.whole_service {
            return vec![Reason::WholeService];
        }
        if level.as_number() < self.min_level {
            return Vec::new();
        }
        if self.all {
            return vec![Reason::All];
        }
        let mut reasons = Vec::new();
        for subregion in &summary.subregions {
            if self.subregions.contains(&subregion.id)
                && (subregion.n_affected > 0 || subregion.whole)
            {
                reasons.push(Reason::Subregion(subregion.id.clone()));
            }
            for actor in &subregion.affected {
                if self.actors.contains(actor) {
                    reasons.push(Reason::Actor(actor.clone()));
                }
            }
        }
        reasons
    }

    /// The choices in Swedish, as a subscriber reads them in every mail: "alla
    /// störningar" or "Borås, Skövde och hela Fyrbodal", with the level when set.
    pub fn describe(&self, inventory: &Inventory) -> String {
        let what = if self.all {
            "alla störningar".to_owned()
        } else {
            let mut names: Vec<String> = self
                .actors
                .iter()
                .map(|id| inventory.actor(id).map_or(id.clone(), |a| a.name.clone()))
                .collect();
            names.extend(self.subregions.iter().map(|id| {
                format!(
                    "hela {}",
                    inventory.subregion(id).map_or(id.as_str(), |s| &s.name)
                )
            }));
            crate::swedish::join_swedish_list(&names)
        };
        match self.min_level {
            2 | 3 => format!("{what}, från nivå {} i planen", self.min_level),
            _ => what,
        }
    }
}

/// Why a notice reaches a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The whole service is down: everyone hears of it.
    WholeService,
    /// The subscriber chose every disruption.
    All,
    /// A chosen sub-region is touched.
    Subregion(String),
    /// A chosen organisation is affected.
    Actor(String),
    /// The subscriber got an earlier notice of this incident.
    Earlier,
}

/// One person a publication reaches, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub subscriber_id: i64,
    pub reasons: Vec<Reason>,
}

/// Who a notice at `level` about `summary` reaches among the confirmed `subscribers`
/// ((id, choices)), given the confirmed subscribers who got an earlier notice of the same
/// incident (`earlier`). Each subscriber at most once, in id order.
pub fn targets(
    subscribers: &[(i64, Choices)],
    earlier: &BTreeSet<i64>,
    summary: &ScopeSummary,
    level: Level,
) -> Vec<Target> {
    let mut targets: BTreeMap<i64, Vec<Reason>> = BTreeMap::new();
    for (subscriber_id, choices) in subscribers {
        let mut reasons = choices.reasons(summary, level);
        if earlier.contains(subscriber_id) {
            reasons.push(Reason::Earlier);
        }
        if !reasons.is_empty() {
            targets.entry(*subscriber_id).or_default().extend(reasons);
        }
    }
    targets
        .into_iter()
        .map(|(subscriber_id, reasons)| Target {
            subscriber_id,
            reasons,
        })
        .collect()
}

/// How many people a notice reaches and why, for the operator's review page: per
/// reason, in Swedish, how many subscribers it applies to (one person may count under
/// several reasons; `n_people` counts each once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub n_people: usize,
    pub by_reason: Vec<(String, usize)>,
}

pub fn reach(targets: &[Target], inventory: &Inventory) -> Reach {
    let mut counts: BTreeMap<&Reason, usize> = BTreeMap::new();
    for target in targets {
        for reason in &target.reasons {
            *counts.entry(reason).or_default() += 1;
        }
    }
    let by_reason = counts
        .into_iter()
        .map(|(reason, n)| {
            let label = match reason {
                Reason::WholeService => {
                    "hela tjänsten är otillgänglig: alla prenumeranter".to_owned()
                }
                Reason::All => "prenumererar på alla störningar".to_owned(),
                Reason::Subregion(id) => format!(
                    "hela {}",
                    inventory.subregion(id).map_or(id.as_str(), |s| &s.name)
                ),
                Reason::Actor(id) => inventory
                    .actor(id)
                    .map_or_else(|| id.clone(), |actor| actor.name.clone()),
                Reason::Earlier => "fick ett tidigare meddelande om störningen".to_owned(),
            };
            (label, n)
        })
        .collect();
    Reach {
        n_people: targets.len(),
        by_reason,
    }
}

/// Where a subscriber stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberState {
    /// Asked for, not yet confirmed from the mailbox (double opt-in): gets nothing.
    Pending,
    /// Confirmed (or imported by an operator): gets the notices that concern them.
    Confirmed,
    /// Ended by the subscriber (or an operator): gets nothing; purged after the
    /// retention time.
    Unsubscribed,
    /// Its address failed permanently too often: gets nothing until it subscribes again.
    Suspended,
}

impl SubscriberState {
    pub const ALL: [SubscriberState; 4] = [
        SubscriberState::Pending,
        SubscriberState::Confirmed,
        SubscriberState::Unsubscribed,
        SubscriberState::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberState::Pending => "pending",
            SubscriberState::Confirmed => "confirmed",
            SubscriberState::Unsubscribed => "unsubscribed",
            SubscriberState::Suspended => "suspended",
        }
    }

    pub fn parse(text: &str) -> Option<SubscriberState> {
        SubscriberState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// In Swedish, for the pages.
    pub fn label(self) -> &'static str {
        match self {
            SubscriberState::Pending => "väntar på bekräftelse",
            SubscriberState::Confirmed => "aktiv",
            SubscriberState::Unsubscribed => "avslutad",
            SubscriberState::Suspended => "avstängd efter upprepade leveransfel",
        }
    }
}

impl fmt::Display for SubscriberState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The outbox recipient of a subscriber: `subscriber:ID`, never the address.
pub fn recipient(subscriber_id: i64) -> String {
    format!("subscriber:{subscriber_id}")
}

/// The subscriber id of an outbox recipient written by [`recipient`].
pub fn subscriber_of_recipient(recipient: &str) -> Option<i64> {
    recipient
        .strip_prefix("subscriber:")
        .and_then(|id| id.parse().ok())
        .filter(|id: &i64| *id > 0)
}

/// The longest address accepted (RFC 5321's path limit).
pub const MAX_ADDRESS_CHARS: usize = 254;

/// An address as subscriptions store and compare it: trimmed, checked, lower case.
pub fn normalize_address(text: &str) -> Result<String, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Ange din e-postadress.");
    }
    if text.chars().count() > MAX_ADDRESS_CHARS || text.chars().any(char::is_control) {
        return Err("Det där är ingen e-postadress. Skriv den som namn@exempel.se.");
    }
    match text.parse::<lettre::Address>() {
        Ok(address) => Ok(address.to_string().to_lowercase()),
        Err(_) => Err("Det där är ingen e-postadress. Skriv den som namn@exempel.se."),
    }
}

/// A random nonce for a subscription's tokens: a new one makes every earlier link of the
/// subscription stop working.
pub fn new_nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{AlertScope, summarize};

    fn inventory() -> Inventory {
        Inventory::default_samsa()
    }

    fn choose(actors: &[&str], subregions: &[&str]) -> Choices {
        Choices::checked(
            false,
            &actors.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>(),
            &subregions
                .iter()
                .map(|id| (*id).to_owned())
                .collect::<Vec<_>>(),
            1,
            &inventory(),
        )
        .unwrap()
    }

    fn outage(actors: &[&str]) -> ScopeSummary {
        let scopes: Vec<AlertScope> = actors
            .iter()
            .map(|id| AlertScope::Actor((*id).to_owned()))
            .collect();
        summarize(&scopes, &inventory())
    }

    #[test]
    fn a_boras_and_skovde_subscriber_gets_boras_not_lerum_and_a_whole_service_outage() {
        let choices = choose(&["kommun-skovde", "kommun-boras"], &[]);
        assert_eq!(choices.actors, ["kommun-skovde", "kommun-boras"]);
        assert_eq!(
            choices.reasons(&outage(&["kommun-boras"]), Level::One),
            [Reason::Actor("kommun-boras".to_owned())]
        );
        assert!(
            choices
                .reasons(&outage(&["kommun-lerum"]), Level::One)
                .is_empty()
        );
        let whole = summarize(&[AlertScope::Everything], &inventory());
        assert_eq!(
            choices.reasons(&whole, Level::Three),
            [Reason::WholeService]
        );
        assert_eq!(choices.describe(&inventory()), "Skövde och Borås");
    }

    #[test]
    fn a_subregion_is_met_when_any_of_its_organisations_is_affected() {
        let choices = choose(&[], &["sodra-alvsborg"]);
        assert_eq!(
            choices.reasons(&outage(&["sjukhus-sas-boras"]), Level::One),
            [Reason::Subregion("sodra-alvsborg".to_owned())]
        );
        assert!(
            choices
                .reasons(&outage(&["kommun-skovde"]), Level::One)
                .is_empty()
        );
        let whole_subregion = summarize(
            &[AlertScope::Subregion("sodra-alvsborg".to_owned())],
            &inventory(),
        );
        assert!(!choices.reasons(&whole_subregion, Level::Two).is_empty());
        assert_eq!(choices.describe(&inventory()), "hela Södra Älvsborg");
    }

    #[test]
    fn a_minimum_level_holds_back_lower_notices_but_never_a_whole_service_outage() {
        let choices = Choices {
            min_level: 2,
            ..Choices::default()
        };
        assert!(
            choices
                .reasons(&outage(&["kommun-boras"]), Level::One)
                .is_empty()
        );
        assert_eq!(
            choices.reasons(&outage(&["kommun-boras"]), Level::Two),
            [Reason::All]
        );
        let whole = summarize(&[AlertScope::Everything], &inventory());
        assert_eq!(choices.reasons(&whole, Level::One), [Reason::WholeService]);
        assert_eq!(
            choices.describe(&inventory()),
            "alla störningar, från nivå 2 i planen"
        );
    }

    #[test]
    fn each_person_once_and_earlier_recipients_keep_hearing_of_the_incident() {
        let both = choose(&["kommun-boras"], &["sodra-alvsborg"]);
        let skovde = choose(&["kommun-skovde"], &[]);
        let lerum = choose(&["kommun-lerum"], &[]);
        let subscribers = vec![(1, both), (2, skovde), (3, lerum)];
        let summary = outage(&["kommun-boras", "kommun-mark"]);
        let found = targets(&subscribers, &BTreeSet::new(), &summary, Level::One);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].subscriber_id, 1);
        assert_eq!(
            found[0].reasons,
            [
                Reason::Subregion("sodra-alvsborg".to_owned()),
                Reason::Actor("kommun-boras".to_owned())
            ]
        );
        // The scope shrank to Lerum: the Borås subscriber heard of the incident and still
        // gets the update; the Lerum subscriber now matches; Skövde still does not.
        let shrunk = outage(&["kommun-lerum"]);
        let earlier = BTreeSet::from([1]);
        let ids: Vec<i64> = targets(&subscribers, &earlier, &shrunk, Level::One)
            .iter()
            .map(|target| target.subscriber_id)
            .collect();
        assert_eq!(ids, [1, 3]);
        let reach = reach(
            &targets(&subscribers, &earlier, &shrunk, Level::One),
            &inventory(),
        );
        assert_eq!(reach.n_people, 2);
        assert_eq!(
            reach.by_reason,
            [
                ("Lerum".to_owned(), 1),
                ("fick ett tidigare meddelande om störningen".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn choices_are_checked_against_the_inventory() {
        let inventory = inventory();
        let ids = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            Choices::checked(false, &[], &[], 1, &inventory),
            Err(ChoicesProblem::Empty)
        );
        assert_eq!(
            Choices::checked(false, &ids(&["kommun-atlantis"]), &[], 1, &inventory),
            Err(ChoicesProblem::Unknown)
        );
        assert_eq!(
            Choices::checked(true, &ids(&["<script>"]), &[], 1, &inventory),
            Err(ChoicesProblem::Unknown)
        );
        assert_eq!(
            Choices::checked(true, &[], &[], 4, &inventory),
            Err(ChoicesProblem::Level)
        );
        let all = Choices::checked(true, &ids(&["kommun-boras"]), &[], 3, &inventory).unwrap();
        assert!(all.all && all.actors.is_empty());
        let twice = Choices::checked(
            false,
            &ids(&["kommun-boras", "kommun-boras", " kommun-ale "]),
            &[],
            1,
            &inventory,
        )
        .unwrap();
        assert_eq!(twice.actors, ["kommun-ale", "kommun-boras"]);
    }

    #[test]
    fn addresses_are_checked_and_lower_cased() {
        assert_eq!(
            normalize_address("  Anna.Berg@Boras.SE ").unwrap(),
            "anna.berg@boras.se"
        );
        for bad in [
            "",
            "anna",
            "anna@boras.se\r\nBcc: x@y.se",
            "<script>@x",
            &format!("{}@boras.se", "a".repeat(300)),
        ] {
            assert!(normalize_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recipients_name_the_subscriber_never_the_address() {
        assert_eq!(recipient(42), "subscriber:42");
        assert_eq!(subscriber_of_recipient("subscriber:42"), Some(42));
        for other in [
            "feed",
            "login-page",
            "subscriber:",
            "subscriber:-1",
            "a@b.se",
        ] {
            assert_eq!(subscriber_of_recipient(other), None, "{other}");
        }
        assert_ne!(new_nonce(), new_nonce());
    }
}
