//! `docs/configuration.md` documents every key the config file accepts, and nothing else.
//!
//! The keys the code accepts come from serde itself: a tracing deserializer walks
//! `RawConfig` the way `Config::from_toml` parses a file, and records every struct field it
//! is asked for, under the names serde uses (renames included). So a field added to any
//! `Raw*` struct, in `src/config.rs` or `src/config/*.rs` or wherever it moves, shows up
//! here without an edit. The keys the documentation names are the first cells of its key
//! tables (the format is described at the top of `docs/configuration.md`). Each side is
//! also checked against the real loader: every key is accepted by `Config::from_toml`
//! (not reported as an unknown key), and every TOML example in the page parses with no
//! unknown key.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use samsa_relay::config::{Config, RawConfig};
use serde::Deserialize;
use serde::de::value::{Error as TraceError, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// The page, relative to the crate's root; read when the tests run, so that an edit of the
/// page needs no rebuild and the test file may move.
const REFERENCE_PATH: &str = "docs/configuration.md";

fn reference() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE_PATH);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let accepted = accepted_keys();
    let documented = documented_keys(&reference()).unwrap_or_else(|problems| {
        panic!(
            "{REFERENCE_PATH} has key table rows in the wrong format:\n{}",
            problems.join("\n")
        )
    });

    let undocumented: Vec<&String> = accepted.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&accepted).collect();
    let mut message = String::new();
    for key in &undocumented {
        message.push_str(&format!(
            "`{key}` is accepted by the config but not documented in {REFERENCE_PATH}\n"
        ));
    }
    for key in &unknown {
        message.push_str(&format!(
            "`{key}` is documented in {REFERENCE_PATH} but the config does not accept it\n"
        ));
    }
    assert!(message.is_empty(), "{message}");
}

#[test]
fn the_loader_accepts_every_traced_and_every_documented_key() {
    let documented = documented_keys(&reference()).unwrap_or_default();
    let keys: BTreeSet<String> = accepted_keys().union(&documented).cloned().collect();
    assert!(!keys.is_empty());
    for key in &keys {
        let problems = unknown_key_problems(&toml_setting(key));
        assert!(
            problems.is_empty(),
            "`{key}` is not accepted by Config::from_toml: {problems:?}"
        );
    }
}

#[test]
fn the_loader_refuses_a_key_that_is_not_in_the_structs() {
    // Guards the test above: the probe TOML it writes would reveal an unknown key.
    for key in [
        "server.no_such_key",
        "channels.NAME.no_such_key",
        "operators[].no_such_key",
        "no_such_section.key",
    ] {
        assert!(
            !unknown_key_problems(&toml_setting(key)).is_empty(),
            "`{key}` was not reported as unknown"
        );
    }
}

#[test]
fn every_toml_example_in_the_reference_uses_only_known_keys() {
    let examples = toml_examples(&reference());
    assert!(
        examples.len() >= 10,
        "expected a TOML example per section in {REFERENCE_PATH}, found {}",
        examples.len()
    );
    for (line, example) in examples {
        let parsed = Config::from_toml(&example, &BTreeMap::new());
        let Err(errors) = parsed else { continue };
        let bad: Vec<String> = errors
            .0
            .iter()
            .filter(|problem| problem.message == "unknown key" || problem.path.starts_with("line "))
            .map(ToString::to_string)
            .collect();
        assert!(
            bad.is_empty(),
            "the TOML example at {REFERENCE_PATH}:{line} does not parse: {bad:?}"
        );
    }
}

#[test]
fn every_key_is_set_in_an_example() {
    let accepted = accepted_keys();
    let mut set = BTreeSet::new();
    for (line, example) in toml_examples(&reference()) {
        let table: toml::Table = toml::from_str(&example).unwrap_or_else(|error| {
            panic!("the TOML example at {REFERENCE_PATH}:{line} is not TOML: {error}")
        });
        collect_paths(&table, "", &accepted, &mut set);
    }
    let missing: Vec<&String> = accepted.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "no TOML example in {REFERENCE_PATH} sets these keys: {missing:?}"
    );
}

#[test]
fn the_tracer_sees_nested_renamed_and_repeated_sections() {
    // A sanity check of the tracer on keys that exist today in each shape of section.
    let accepted = accepted_keys();
    for key in [
        "server.listen",
        "channels.NAME.content",
        "channels.NAME.headers",
        "plan.level_3",
        "operators[].email",
        "review.trusted_user_header",
    ] {
        assert!(
            accepted.contains(key),
            "the tracer missed `{key}`: {accepted:?}"
        );
    }
    assert!(!accepted.contains("channels"));
    assert!(!accepted.contains("operators"));
}

// --- The keys the code accepts ---------------------------------------------------------

/// Every leaf key of `RawConfig`: a struct field whose value is not itself a section.
/// `channels.NAME.x` stands for a key inside any `[channels.NAME]` table, `operators[].x`
/// for a key inside any `[[operators]]` entry.
fn accepted_keys() -> BTreeSet<String> {
    let fields = RefCell::new(BTreeSet::new());
    RawConfig::deserialize(Tracer {
        path: String::new(),
        fields: &fields,
        depth: 0,
    })
    .unwrap_or_else(|error| panic!("cannot trace RawConfig: {error}"));
    let fields = fields.into_inner();
    fields
        .iter()
        .filter(|field| {
            !fields.iter().any(|other| {
                other.len() > field.len()
                    && other.starts_with(field.as_str())
                    && matches!(other.as_bytes()[field.len()], b'.' | b'[')
            })
        })
        .cloned()
        .collect()
}

/// A deserializer that answers every request with a sample value, and records the path of
/// every struct field serde asks for. A map stands for one entry named `NAME`, a sequence
/// for one element (`[]`).
struct Tracer<'a> {
    path: String,
    fields: &'a RefCell<BTreeSet<String>>,
    depth: usize,
}

impl<'a> Tracer<'a> {
    fn child(&self, path: String) -> Tracer<'a> {
        Tracer {
            path,
            fields: self.fields,
            depth: self.depth + 1,
        }
    }

    fn join(&self, segment: &str) -> String {
        if self.path.is_empty() {
            segment.to_owned()
        } else {
            format!("{}.{segment}", self.path)
        }
    }
}

macro_rules! sample {
    ($($method:ident => $visit:ident($($value:expr)?);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
                visitor.$visit($($value)?)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        // A self-describing value (an untagged enum, `#[serde(flatten)]`, a custom impl)
        // has no field list to read: fail loudly rather than miss its keys.
        Err(de::Error::custom(format!(
            "`{}` asks for any value; teach tests/it/config_reference.rs its shape",
            self.path
        )))
    }

    sample! {
        deserialize_bool => visit_bool(false);
        deserialize_i8 => visit_i8(1);
        deserialize_i16 => visit_i16(1);
        deserialize_i32 => visit_i32(1);
        deserialize_i64 => visit_i64(1);
        deserialize_u8 => visit_u8(1);
        deserialize_u16 => visit_u16(1);
        deserialize_u32 => visit_u32(1);
        deserialize_u64 => visit_u64(1);
        deserialize_f32 => visit_f32(0.5);
        deserialize_f64 => visit_f64(0.5);
        deserialize_char => visit_char('x');
        deserialize_str => visit_str("x");
        deserialize_string => visit_str("x");
        deserialize_bytes => visit_bytes(b"x");
        deserialize_byte_buf => visit_bytes(b"x");
        deserialize_unit => visit_unit();
        deserialize_identifier => visit_str("x");
        deserialize_ignored_any => visit_unit();
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let element = self.child(format!("{}[]", self.path));
        visitor.visit_seq(OneElement {
            element: Some(element),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let value = self.child(self.join("NAME"));
        visitor.visit_map(Entries {
            entries: vec![("NAME", value)].into_iter(),
            pending: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        if self.depth > 16 {
            return Err(de::Error::custom(format!("`{}` nests too deep", self.path)));
        }
        let entries: Vec<(&'static str, Tracer<'_>)> = fields
            .iter()
            .map(|field| {
                let path = self.join(field);
                self.fields.borrow_mut().insert(path.clone());
                (*field, self.child(path))
            })
            .collect();
        visitor.visit_map(Entries {
            entries: entries.into_iter(),
            pending: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let first: StrDeserializer<'_, TraceError> = variants[0].into_deserializer();
        visitor.visit_enum(first)
    }
}

struct OneElement<'a> {
    element: Option<Tracer<'a>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        match self.element.take() {
            Some(element) => seed.deserialize(element).map(Some),
            None => Ok(None),
        }
    }
}

struct Entries<'a> {
    entries: std::vec::IntoIter<(&'static str, Tracer<'a>)>,
    pending: Option<Tracer<'a>>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.pending = Some(value);
                let key: StrDeserializer<'_, TraceError> = key.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, TraceError> {
        let value = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(value)
    }
}

// --- The keys the documentation names --------------------------------------------------

/// The keys of every key table: a Markdown table whose header's first cell is `key`. Each
/// of its rows must start with one key in backticks, e.g. `` | `server.listen` | ``.
fn documented_keys(markdown: &str) -> Result<BTreeSet<String>, Vec<String>> {
    let mut keys = BTreeSet::new();
    let mut problems = Vec::new();
    let mut in_key_table = false;
    let mut in_code_block = false;
    for (index, line) in markdown.lines().enumerate() {
        let line_number = index + 1;
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let Some(cells) = table_cells(line) else {
            in_key_table = false;
            continue;
        };
        let first = cells[0];
        if first == "key" {
            in_key_table = true;
            continue;
        }
        if !in_key_table || first.chars().all(|c| c == '-' || c == ':') {
            continue;
        }
        match first
            .strip_prefix('`')
            .and_then(|rest| rest.strip_suffix('`'))
            .filter(|key| is_key_path(key))
        {
            Some(key) => {
                if !keys.insert(key.to_owned()) {
                    problems.push(format!("{REFERENCE_PATH}:{line_number}: `{key}` twice"));
                }
            }
            None => problems.push(format!(
                "{REFERENCE_PATH}:{line_number}: a key table row must start with a key such as \
                 `server.listen`, found {first:?}"
            )),
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

/// The cells of a Markdown table row, trimmed; `None` for any other line.
fn table_cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

/// `section.key`, `channels.NAME.key` or `operators[].key`: lowercase names joined by dots,
/// a name followed by `[]` for an array of tables.
fn is_key_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('.').collect();
    segments.len() >= 2
        && segments.iter().all(|segment| {
            let name = segment.strip_suffix("[]").unwrap_or(segment);
            name == "NAME"
                || (!name.is_empty()
                    && name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        })
}

/// The ```toml blocks of the page, with the line each starts on.
fn toml_examples(markdown: &str) -> Vec<(usize, String)> {
    let mut examples = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None if trimmed == "```toml" => current = Some((index + 1, String::new())),
            None => {}
            Some(_) if trimmed.starts_with("```") => examples.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    examples
}

/// Every key path `table` sets, written as the key tables write them: the tables under a
/// section of free names (`[channels.NAME]`) as `NAME`, array entries as `[]`.
fn collect_paths(
    table: &toml::Table,
    path: &str,
    accepted: &BTreeSet<String>,
    paths: &mut BTreeSet<String>,
) {
    let named = !path.is_empty()
        && accepted
            .iter()
            .any(|key| key.starts_with(&format!("{path}.NAME.")));
    for (key, value) in table {
        let segment = if named { "NAME" } else { key.as_str() };
        let child = if path.is_empty() {
            segment.to_owned()
        } else {
            format!("{path}.{segment}")
        };
        match value {
            toml::Value::Table(inner) => collect_paths(inner, &child, accepted, paths),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        collect_paths(inner, &format!("{child}[]"), accepted, paths);
                    }
                }
            }
            _ => {}
        }
        paths.insert(child);
    }
}

// --- The real loader ------------------------------------------------------------------

/// A TOML file that sets only `key`, to a value of some type: a wrong type stops the parse
/// with a type error, but an unknown key is reported as such whatever its value.
fn toml_setting(key: &str) -> String {
    let (table, leaf) = key.rsplit_once('.').expect("a key has a section");
    match table.strip_suffix("[]") {
        Some(array) => format!("[[{array}]]\n{leaf} = true\n"),
        None => format!("[{}]\n{leaf} = true\n", table.replace("NAME", "probe")),
    }
}

/// The "unknown key" problems `Config::from_toml` reports for `text`.
fn unknown_key_problems(text: &str) -> Vec<String> {
    match Config::from_toml(text, &BTreeMap::new()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .0
            .iter()
            .filter(|problem| problem.message == "unknown key")
            .map(ToString::to_string)
            .collect(),
    }
}
