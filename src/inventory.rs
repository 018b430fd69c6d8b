//! The inventory: which organisations ("actors") use SAMSA and which sub-region each
//! belongs to. It turns the ids that monitoring puts in alert labels into the names people
//! read, and it is the denominator of every "12 av 14 kommuner".
//!
//! The shipped inventory is `deploy/inventory.toml`, embedded in the binary; a deployment
//! may point `[inventory] file` at an edited copy. [`Inventory::from_toml`] is the only way
//! in: it checks the whole file and reports every problem with its key path, so an
//! [`Inventory`] always has unique, well-formed ids and actors in known sub-regions.

use serde::{Deserialize, Serialize};

/// The inventory shipped with the relay (`deploy/inventory.toml`).
pub const DEFAULT_INVENTORY_TOML: &str = include_str!("../deploy/inventory.toml");

/// Sub-regions and actors, in file order (notices list them in this order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    subregions: Vec<Subregion>,
    actors: Vec<Actor>,
}

/// One of the four sub-regions of Västra Götaland (Fyrbodal, Göteborgsregionen, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subregion {
    pub id: String,
    pub name: String,
}

/// An organisation that uses SAMSA: a municipality, a hospital site or primary care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub subregion_id: String,
    pub kind: ActorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    Kommun,
    Sjukhus,
    Primarvard,
}

/// One problem in an inventory file: (key path such as `inventory.actors[3].subregion`,
/// message).
pub type InventoryProblem = (String, String);

impl ActorKind {
    /// The word used in the inventory file and in serialized output.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Kommun => "kommun",
            ActorKind::Sjukhus => "sjukhus",
            ActorKind::Primarvard => "primarvard",
        }
    }

    fn parse(text: &str) -> Option<ActorKind> {
        match text {
            "kommun" => Some(ActorKind::Kommun),
            "sjukhus" => Some(ActorKind::Sjukhus),
            "primarvard" => Some(ActorKind::Primarvard),
            _ => None,
        }
    }
}

impl Inventory {
    /// The inventory shipped with the relay. It is checked by a unit test, so this cannot
    /// fail in a released binary.
    pub fn default_samsa() -> Inventory {
        Inventory::from_toml(DEFAULT_INVENTORY_TOML)
            .expect("the embedded deploy/inventory.toml is valid (checked by a unit test)")
    }

    /// Parses and checks an inventory file, reporting every problem with its key path.
    pub fn from_toml(text: &str) -> Result<Inventory, Vec<InventoryProblem>> {
        let mut problems: Vec<InventoryProblem> = Vec::new();
        let mut unknown_keys = Vec::new();
        let raw: RawInventory =
            match serde_ignored::deserialize(toml::Deserializer::new(text), |path| {
                unknown_keys.push(format_ignored_path(&path));
            }) {
                Ok(raw) => raw,
                Err(error) => {
                    return Err(vec![(
                        "inventory".to_owned(),
                        error.to_string().trim().replace('\n', " "),
                    )]);
                }
            };
        for key in unknown_keys {
            problems.push((format!("inventory.{key}"), "unknown key".to_owned()));
        }

        if raw.subregions.is_empty() {
            problems.push((
                "inventory.subregions".to_owned(),
                "at least one sub-region is required".to_owned(),
            ));
        }
        if raw.actors.is_empty() {
            problems.push((
                "inventory.actors".to_owned(),
                "at least one actor is required".to_owned(),
            ));
        }

        let mut subregions = Vec::with_capacity(raw.subregions.len());
        for (index, raw_subregion) in raw.subregions.into_iter().enumerate() {
            let path = format!("inventory.subregions[{index}]");
            check_id(&mut problems, &format!("{path}.id"), &raw_subregion.id);
            check_name(&mut problems, &format!("{path}.name"), &raw_subregion.name);
            if subregions
                .iter()
                .any(|known: &Subregion| known.id == raw_subregion.id)
            {
                problems.push((
                    format!("{path}.id"),
                    format!("duplicate sub-region id {:?}", raw_subregion.id),
                ));
            }
            subregions.push(Subregion {
                id: raw_subregion.id,
                name: raw_subregion.name.trim().to_owned(),
            });
        }

        let mut actors: Vec<Actor> = Vec::with_capacity(raw.actors.len());
        for (index, raw_actor) in raw.actors.into_iter().enumerate() {
            let path = format!("inventory.actors[{index}]");
            check_id(&mut problems, &format!("{path}.id"), &raw_actor.id);
            check_name(&mut problems, &format!("{path}.name"), &raw_actor.name);
            if actors.iter().any(|known| known.id == raw_actor.id) {
                problems.push((
                    format!("{path}.id"),
                    format!("duplicate actor id {:?}", raw_actor.id),
                ));
            }
            if raw_actor.subregion.is_empty() {
                problems.push((format!("{path}.subregion"), "required".to_owned()));
            } else if !subregions
                .iter()
                .any(|subregion| subregion.id == raw_actor.subregion)
            {
                problems.push((
                    format!("{path}.subregion"),
                    format!(
                        "unknown sub-region {:?}; declare it under [[subregions]]",
                        raw_actor.subregion
                    ),
                ));
            }
            let kind = ActorKind::parse(&raw_actor.kind);
            if kind.is_none() {
                problems.push((
                    format!("{path}.kind"),
                    format!(
                        "expected kommun, sjukhus or primarvard, found {:?}",
                        raw_actor.kind
                    ),
                ));
            }
            actors.push(Actor {
                id: raw_actor.id,
                name: raw_actor.name.trim().to_owned(),
                subregion_id: raw_actor.subregion,
                // A placeholder only when a problem was recorded above; then the inventory
                // is discarded.
                kind: kind.unwrap_or(ActorKind::Kommun),
            });
        }

        if problems.is_empty() {
            Ok(Inventory { subregions, actors })
        } else {
            Err(problems)
        }
    }

    pub fn subregions(&self) -> &[Subregion] {
        &self.subregions
    }

    pub fn actors(&self) -> &[Actor] {
        &self.actors
    }

    pub fn actor(&self, id: &str) -> Option<&Actor> {
        self.actors.iter().find(|actor| actor.id == id)
    }

    pub fn subregion(&self, id: &str) -> Option<&Subregion> {
        self.subregions.iter().find(|subregion| subregion.id == id)
    }

    /// The actors of one sub-region, in file order; empty for an unknown id.
    pub fn actors_in<'inventory>(
        &'inventory self,
        subregion_id: &'inventory str,
    ) -> impl Iterator<Item = &'inventory Actor> + 'inventory {
        self.actors
            .iter()
            .filter(move |actor| actor.subregion_id == subregion_id)
    }
}

/// The inventory file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawInventory {
    /// `[[subregions]]`: id and display name of each sub-region.
    subregions: Vec<RawSubregion>,
    /// `[[actors]]`: id, display name, sub-region id and kind of each organisation.
    actors: Vec<RawActor>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSubregion {
    /// The value monitoring puts in the `subregion` label, e.g. `fyrbodal`.
    id: String,
    /// The name people read, e.g. `Fyrbodal`.
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawActor {
    /// The value monitoring puts in the `actor` label, e.g. `kommun-uddevalla`.
    id: String,
    /// The name people read, e.g. `Uddevalla` (municipalities without "kommun").
    name: String,
    /// The id of the actor's sub-region.
    subregion: String,
    /// `kommun`, `sjukhus` or `primarvard`. Kept as text so that a wrong value is one
    /// problem among others rather than a parse error that hides the rest.
    kind: String,
}

fn check_id(problems: &mut Vec<InventoryProblem>, path: &str, id: &str) {
    if id.is_empty() {
        problems.push((path.to_owned(), "required".to_owned()));
    } else if !is_valid_id(id) {
        problems.push((
            path.to_owned(),
            format!("{id:?} must contain only a-z, 0-9 and '-'"),
        ));
    }
}

fn check_name(problems: &mut Vec<InventoryProblem>, path: &str, name: &str) {
    if name.trim().is_empty() {
        problems.push((path.to_owned(), "must not be empty".to_owned()));
    } else if name.chars().any(char::is_control) {
        problems.push((
            path.to_owned(),
            "must not contain control characters".to_owned(),
        ));
    }
}

/// Ids are `[a-z0-9-]+`: safe in labels, URLs and file names, and never confusable.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// A name made into an id-like word: lower case ASCII letters and digits, anything else
/// a hyphen (`SAMSA` -> `samsa`, `Vård Öst` -> `v-rd--st`).
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `actors.3.kind` style paths from serde_ignored, written as `actors[3].kind`.
fn format_ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", format_ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = format_ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => format_ignored_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_inventory_has_the_49_municipalities_in_four_subregions() {
        let inventory = Inventory::default_samsa();
        let ids: Vec<&str> = inventory
            .subregions()
            .iter()
            .map(|subregion| subregion.id.as_str())
            .collect();
        assert_eq!(ids, ["fyrbodal", "goteborg", "skaraborg", "sodra-alvsborg"]);
        let municipalities_in = |subregion_id: &str| {
            inventory
                .actors_in(subregion_id)
                .filter(|actor| actor.kind == ActorKind::Kommun)
                .count()
        };
        assert_eq!(municipalities_in("fyrbodal"), 14);
        assert_eq!(municipalities_in("goteborg"), 12);
        assert_eq!(municipalities_in("skaraborg"), 15);
        assert_eq!(municipalities_in("sodra-alvsborg"), 8);
        let count_of = |kind: ActorKind| {
            inventory
                .actors()
                .iter()
                .filter(|actor| actor.kind == kind)
                .count()
        };
        assert_eq!(count_of(ActorKind::Kommun), 49);
        assert_eq!(count_of(ActorKind::Sjukhus), 14);
        assert_eq!(count_of(ActorKind::Primarvard), 4);
        assert_eq!(inventory.actors().len(), 67);
        assert_eq!(inventory.actor("kommun-amal").unwrap().name, "Åmål");
        assert_eq!(
            inventory.subregion("sodra-alvsborg").unwrap().name,
            "Södra Älvsborg"
        );
        assert!(inventory.actor("kommun-atlantis").is_none());
        assert_eq!(inventory.actors_in("atlantis").count(), 0);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
[[subregions]]
id = "north"
name = "North"
[[subregions]]
id = "north"
name = ""
[[actors]]
id = "a-1"
name = "A"
subregion = "north"
kind = "kommun"
[[actors]]
id = "a-1"
name = "B"
subregion = "south"
kind = "hospital"
colour = "blue"
[[actors]]
id = "Bad Id"
name = "C"
subregion = "north"
kind = "sjukhus"
"#;
        let problems = Inventory::from_toml(text).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|(path, _)| path.as_str()).collect();
        for expected in [
            "inventory.subregions[1].id",
            "inventory.subregions[1].name",
            "inventory.actors[1].id",
            "inventory.actors[1].subregion",
            "inventory.actors[1].kind",
            "inventory.actors[1].colour",
            "inventory.actors[2].id",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {problems:?}"
            );
        }
    }

    #[test]
    fn empty_and_malformed_files_are_refused() {
        assert!(Inventory::from_toml("").is_err());
        let problems = Inventory::from_toml("[[actors]\n").unwrap_err();
        assert_eq!(problems[0].0, "inventory");
    }

    #[test]
    fn ids_are_lowercase_ascii_digits_and_hyphens() {
        for (id, valid) in [
            ("kommun-ale", true),
            ("a1-2", true),
            ("", false),
            ("Kommun", false),
            ("kommun_ale", false),
            ("kommun ale", false),
            ("kommun-öckerö", false),
        ] {
            assert_eq!(is_valid_id(id), valid, "{id:?}");
        }
    }
}
