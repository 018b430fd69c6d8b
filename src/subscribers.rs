//! The subscribers service: what the public pages, the review page, the command line and
//! the upkeep loop do with subscriptions ([`crate::subscription`] holds the rules,
//! [`crate::storage::Subscriptions`] the state).
//!
//! - [`request`]: a request from the public page. Double opt-in: a new (or ended)
//!   subscription waits for the confirmation link mailed to the address; an address
//!   subscribed already gets a mail with its own link instead, and its choices do not
//!   change. Either way the page answers the same (it answers before this runs).
//! - [`reach`]: how many subscribers a notice would reach and why (the review page).
//! - [`SubscriptionUpkeep`]: purges expired requests and ended subscriptions.
//! - The command line (`samsa-relay subscribers …`): [`list`], [`count`],
//!   [`import`], [`remove`], [`export`], [`delete`].
//!
//! The confirmation mails go through the operator mail outbox (purpose `subscription`),
//! so a crash loses none; they are deleted with the subscriber and purged once old.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::classify::{Level, ScopeSummary};
use crate::config::Config;
use crate::inventory::Inventory;
use crate::links::{LinkSigner, SubscriptionAction, SubscriptionClaims};
use crate::storage::{
    NewSubscriber, OperatorMailWrite, RequestOutcome, Storage, StorageError, SubscriberRecord,
};
use crate::subscription::{Choices, Reach, new_nonce, normalize_address};
use crate::swedish::format_swedish_duration;

/// The operator mail purpose of a subscriber's confirmation mail.
pub const MAIL_PURPOSE: &str = "subscription";

/// A link to a subscriber's page: `/public/subscription/TOKEN`.
pub fn manage_path(signer: &LinkSigner, subscriber_id: i64, nonce: &str) -> String {
    let token = signer.sign_subscription(&SubscriptionClaims {
        action: SubscriptionAction::Manage,
        subscriber_id,
        nonce: nonce.to_owned(),
        expires_at: None,
    });
    format!("/public/subscription/{token}")
}

/// A confirmation link: `/public/subscribe/confirm/TOKEN`, valid `subscriptions.confirm_ttl`.
pub fn confirm_path(
    signer: &LinkSigner,
    config: &Config,
    subscriber_id: i64,
    nonce: &str,
    now: Timestamp,
) -> String {
    let ttl = SignedDuration::try_from(config.subscriptions.confirm_ttl)
        .unwrap_or(SignedDuration::from_hours(48));
    let token = signer.sign_subscription(&SubscriptionClaims {
        action: SubscriptionAction::Confirm,
        subscriber_id,
        nonce: nonce.to_owned(),
        expires_at: Some((now + ttl).as_second()),
    });
    format!("/public/subscribe/confirm/{token}")
}

/// Stores a request from the public page and enqueues its mail, in one transaction.
/// `address` is checked ([`normalize_address`]), `choices` too ([`Choices::checked`]).
pub async fn request(
    storage: &Storage,
    config: &Config,
    signer: &LinkSigner,
    address: &str,
    choices: &Choices,
    now: Timestamp,
) -> Result<(), StorageError> {
    let mut transaction = storage.begin_write().await?;
    let outcome = transaction
        .request_subscription(address, choices, "self-service", &new_nonce(), now)
        .await?;
    let service = &config.notices.service_name;
    let stored = stored_text(config);
    let (subscriber_id, subject, body) = match outcome {
        RequestOutcome::Pending {
            subscriber_id,
            nonce,
        } => {
            let link =
                config.public_link(&confirm_path(signer, config, subscriber_id, &nonce, now));
            let ttl = format_swedish_duration(config.subscriptions.confirm_ttl);
            (
                subscriber_id,
                format!("Bekräfta din prenumeration på driftinformation om {service}"),
                format!(
                    "Hej!\n\nNågon, förhoppningsvis du, har bett om driftinformation om {service} till den här adressen: {choices}.\n\n\
                     Bekräfta prenumerationen på sidan nedan (länken gäller i {ttl}):\n{link}\n\n\
                     Bad du inte om det kan du bortse från meddelandet: utan bekräftelse skickas inget, och adressen raderas efter {ttl}.\n\n\
                     {stored}\n\n{service} förvaltning\n",
                    choices = choices.describe(&config.inventory),
                ),
            )
        }
        RequestOutcome::AlreadyConfirmed {
            subscriber_id,
            nonce,
        } => {
            let link = config.public_link(&manage_path(signer, subscriber_id, &nonce));
            (
                subscriber_id,
                format!("Du prenumererar redan på driftinformation om {service}"),
                format!(
                    "Hej!\n\nNågon, förhoppningsvis du, bad om en prenumeration på driftinformation om {service} till den här adressen. \
                     Adressen prenumererar redan, och dina val är oförändrade.\n\n\
                     Ändra dina val, avsluta prenumerationen eller radera dina uppgifter:\n{link}\n\n\
                     {stored}\n\n{service} förvaltning\n"
                ),
            )
        }
    };
    let mail = OperatorMailWrite {
        dedupe_key: format!("subscribe:{subscriber_id}:{}", now.as_nanosecond()),
        purpose: MAIL_PURPOSE.to_owned(),
        incident_id: None,
        draft_id: None,
        draft_version: None,
        to_address: address.to_owned(),
        subject,
        body,
    };
    transaction.enqueue_operator_mail(&[mail], now).await?;
    transaction.commit().await
}

/// What is stored and why, in Swedish: on the subscribe page and in every mail of it.
pub fn stored_text(config: &Config) -> String {
    format!(
        "Vi sparar bara din e-postadress, dina val, när du bekräftade och hur prenumerationen kom till, \
         och använder dem bara för att skicka driftinformation om {service}. En obekräftad anmälan raderas efter {ttl}, \
         en avslutad prenumeration efter {retention}. Du kan när som helst ändra, avsluta eller radera via länken i varje meddelande. \
         Frågor: {info}.",
        service = config.notices.service_name,
        ttl = format_swedish_duration(config.subscriptions.confirm_ttl),
        retention = format_swedish_duration(config.subscriptions.retention),
        info = config.notices.info_address,
    )
}

/// How many subscribers a notice at `level` about `summary` of `incident_id` would reach
/// if published now, and why.
pub async fn reach(
    storage: &Storage,
    config: &Config,
    incident_id: i64,
    summary: &ScopeSummary,
    level: Level,
) -> Result<Reach, StorageError> {
    let subscribers = storage.confirmed_choices().await?;
    let earlier: BTreeSet<i64> = storage
        .earlier_subscriber_recipients(incident_id)
        .await?
        .into_iter()
        .collect();
    let targets = crate::subscription::targets(&subscribers, &earlier, summary, level);
    Ok(crate::subscription::reach(&targets, &config.inventory))
}

/// Purges what is no longer kept: requests not confirmed within `confirm_ttl`,
/// subscriptions ended more than `retention` ago. One step, then every ten minutes.
pub struct SubscriptionUpkeep {
    pub storage: Storage,
    pub config: std::sync::Arc<Config>,
}

impl SubscriptionUpkeep {
    const EVERY: Duration = Duration::from_secs(600);

    /// Purges once; returns how many subscriptions went.
    pub async fn step(&self, now: Timestamp) -> Result<u64, StorageError> {
        let settings = &self.config.subscriptions;
        let before = |age: Duration| {
            now - SignedDuration::try_from(age).unwrap_or(SignedDuration::from_hours(24))
        };
        self.storage
            .purge_subscribers(before(settings.confirm_ttl), before(settings.retention))
            .await
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.step(Timestamp::now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired and ended subscriptions purged"),
                Err(error) => {
                    tracing::warn!(error = ?anyhow::Error::from(error), "the subscription purge failed; retrying later");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Self::EVERY) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The command line.

/// Every subscriber, one per line: address, state, choices, source, consent, failures.
pub async fn list(storage: &Storage, inventory: &Inventory) -> Result<String, StorageError> {
    let mut out = String::from("address\tstate\tchoices\tsource\tconsented\tfailures\n");
    for subscriber in storage.subscribers().await? {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            subscriber.address,
            subscriber.state,
            subscriber.choices.describe(inventory),
            subscriber.source,
            subscriber
                .consented_at
                .map_or_else(|| "-".to_owned(), |at| at.to_string()),
            subscriber.permanent_failures,
        ));
    }
    Ok(out)
}

/// How many subscribers are in each state, every state listed.
pub async fn count(storage: &Storage) -> Result<String, StorageError> {
    let counts = storage.subscriber_counts().await?;
    let mut out = String::new();
    for state in crate::subscription::SubscriberState::ALL {
        let n = counts
            .iter()
            .find(|(counted, _)| *counted == state)
            .map_or(0, |(_, n)| *n);
        out.push_str(&format!("{state}\t{n}\n"));
    }
    Ok(out)
}

/// Reads an import file: CSV with a header naming an address column (`email`, `e-post`,
/// `epost`, `e-mail`, `mail`, `address`, `adress`) and an organisations column
/// (`organisations`, `organisationer`, `organisation`, `choices`, `val`), separated by
/// `,`, `;` or a tab (from the header line), cells optionally in double quotes. The
/// organisations cell lists actors and sub-regions of the inventory by id or name,
/// separated by `,`, `;` or `|`, or says `alla` (every disruption). Every problem is
/// reported, with its line; nothing is imported when there is one.
pub fn read_import(text: &str, inventory: &Inventory) -> Result<Vec<NewSubscriber>, Vec<String>> {
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Err(vec!["the file is empty".to_owned()]);
    };
    let separator = [';', '\t', ',']
        .into_iter()
        .find(|separator| header.contains(*separator))
        .unwrap_or(',');
    let columns: Vec<String> = split_csv_line(header, separator)
        .iter()
        .map(|cell| cell.trim().to_lowercase())
        .collect();
    let find = |names: &[&str]| {
        columns
            .iter()
            .position(|column| names.contains(&column.as_str()))
    };
    let address_column = find(&[
        "email", "e-post", "epost", "e-mail", "mail", "address", "adress",
    ]);
    let choices_column = find(&[
        "organisations",
        "organisationer",
        "organisation",
        "choices",
        "val",
    ]);
    let (Some(address_column), Some(choices_column)) = (address_column, choices_column) else {
        return Err(vec![
            "line 1: the header needs an address column (email, e-post, …) and an organisations column (organisationer, …)"
                .to_owned(),
        ]);
    };
    let mut problems = Vec::new();
    let mut subscribers: Vec<NewSubscriber> = Vec::new();
    for (line_number, line) in lines {
        let cells = split_csv_line(line, separator);
        let cell = |index: usize| cells.get(index).map_or("", |cell| cell.trim());
        let address = match normalize_address(cell(address_column)) {
            Ok(address) => address,
            Err(_) => {
                problems.push(format!(
                    "line {line_number}: {:?} is not an email address",
                    crate::swedish::single_line(cell(address_column), 80)
                ));
                continue;
            }
        };
        if subscribers.iter().any(|known| known.address == address) {
            problems.push(format!("line {line_number}: {address} is listed twice"));
            continue;
        }
        match parse_choices(cell(choices_column), inventory) {
            Ok(choices) => subscribers.push(NewSubscriber {
                address,
                choices,
                nonce: new_nonce(),
            }),
            Err(problem) => problems.push(format!("line {line_number}: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(subscribers)
    } else {
        Err(problems)
    }
}

/// Actors and sub-regions by id or name (any case), or `alla`/`all`.
fn parse_choices(cell: &str, inventory: &Inventory) -> Result<Choices, String> {
    let mut actors = Vec::new();
    let mut subregions = Vec::new();
    let mut all = false;
    for word in cell
        .split([',', ';', '|'])
        .map(str::trim)
        .filter(|word| !word.is_empty())
    {
        let lower = word.to_lowercase();
        if lower == "alla" || lower == "all" {
            all = true;
        } else if let Some(actor) = inventory
            .actors()
            .iter()
            .find(|actor| actor.id == lower || actor.name.to_lowercase() == lower)
        {
            actors.push(actor.id.clone());
        } else if let Some(subregion) = inventory
            .subregions()
            .iter()
            .find(|subregion| subregion.id == lower || subregion.name.to_lowercase() == lower)
        {
            subregions.push(subregion.id.clone());
        } else {
            return Err(format!(
                "{:?} is no organisation or sub-region of the inventory",
                crate::swedish::single_line(word, 80)
            ));
        }
    }
    Choices::checked(all, &actors, &subregions, 1, inventory).map_err(|problem| match problem {
        crate::subscription::ChoicesProblem::Empty => {
            "no organisations (write alla for every disruption)".to_owned()
        }
        other => other.to_string(),
    })
}

/// One CSV line's cells: `separator` splits, except inside double quotes (`""` is a quote).
fn split_csv_line(line: &str, separator: char) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut characters = line.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '"' if quoted && characters.peek() == Some(&'"') => {
                characters.next();
                cells.last_mut().expect("one cell").push('"');
            }
            '"' => quoted = !quoted,
            _ if character == separator && !quoted => cells.push(String::new()),
            _ => cells.last_mut().expect("one cell").push(character),
        }
    }
    cells
}

/// Imports a file (see [`read_import`]) as confirmed subscriptions, recorded as imported
/// by `by`. Returns what happened, in lines; an error lists every problem of the file.
pub async fn import(
    storage: &Storage,
    config: &Config,
    file: &Path,
    by: &str,
    now: Timestamp,
) -> anyhow::Result<String> {
    let by = by.trim();
    anyhow::ensure!(
        !by.is_empty() && !by.chars().any(char::is_control),
        "--by needs the name of whoever imports"
    );
    let text = std::fs::read_to_string(file)
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", file.display()))?;
    let subscribers = read_import(&text, &config.inventory).map_err(|problems| {
        anyhow::anyhow!(
            "{}: nothing imported:\n{}",
            file.display(),
            problems.join("\n")
        )
    })?;
    let outcome = storage
        .import_subscribers(&subscribers, &format!("import by {by}"), now)
        .await?;
    let mut out = format!(
        "{} imported, {} subscribed already (left as they were)\n",
        outcome.added.len(),
        outcome.already_subscribed.len()
    );
    for address in &outcome.already_subscribed {
        out.push_str(&format!("subscribed already: {address}\n"));
    }
    Ok(out)
}

/// Ends the subscription of an address (an operator's remove); purged after `retention`.
pub async fn remove(
    storage: &Storage,
    address: &str,
    by: &str,
    now: Timestamp,
) -> Result<bool, StorageError> {
    storage.remove_subscriber(address, by, now).await
}

/// Everything stored about an address, as JSON (the subscriber's right of access); `None`
/// when nothing is.
pub async fn export(
    storage: &Storage,
    config: &Config,
    address: &str,
) -> Result<Option<serde_json::Value>, StorageError> {
    let Some(subscriber) = storage.subscriber_by_address(address).await? else {
        return Ok(None);
    };
    let deliveries = storage
        .subscriber_deliveries(subscriber.subscriber_id)
        .await?;
    Ok(Some(export_json(&subscriber, &deliveries, config)))
}

fn export_json(
    subscriber: &SubscriberRecord,
    deliveries: &[crate::storage::SubscriberDelivery],
    config: &Config,
) -> serde_json::Value {
    let time = |at: Option<Timestamp>| at.map(|at| at.to_string());
    let service = &config.notices.service_name;
    serde_json::json!({
        "address": subscriber.address,
        "state": subscriber.state.as_str(),
        "choices": {
            "all": subscriber.choices.all,
            "organisations": subscriber.choices.actors,
            "subregions": subscriber.choices.subregions,
            "from_level": subscriber.choices.min_level,
            "described": subscriber.choices.describe(&config.inventory),
        },
        "source": subscriber.source,
        "requested_at": subscriber.requested_at.to_string(),
        "consented_at": time(subscriber.consented_at),
        "ended_at": time(subscriber.ended_at),
        "updated_at": subscriber.updated_at.to_string(),
        "permanent_failures": subscriber.permanent_failures,
        "last_failure": subscriber.last_failure,
        "notices": deliveries.iter().map(|delivery| serde_json::json!({
            "incident": format!("{service}-{}", delivery.incident_id),
            "notice_id": delivery.notice_id,
            "channel": delivery.channel,
            "state": delivery.state,
            "sent_at": time(delivery.sent_at),
        })).collect::<Vec<_>>(),
    })
}

/// Deletes everything stored about an address (the right to erasure). False when nothing
/// was stored.
pub async fn delete(storage: &Storage, address: &str) -> Result<bool, StorageError> {
    storage.delete_subscriber(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_file_names_organisations_by_id_or_name_and_reports_every_problem() {
        let inventory = Inventory::default_samsa();
        let good = "\u{feff}Namn;E-post;Organisationer\n\
                    Anna;anna@boras.example;\"Borås, kommun-skovde\"\n\
                    Bo;BO@lerum.example;Göteborgsregionen|alla\n\
                    \n\
                    Cia;cia@example.org;skaraborg\n";
        let subscribers = read_import(good, &inventory).unwrap();
        assert_eq!(subscribers.len(), 3);
        assert_eq!(
            subscribers[0].choices.actors,
            ["kommun-skovde", "kommun-boras"]
        );
        assert_eq!(subscribers[1].address, "bo@lerum.example");
        assert!(subscribers[1].choices.all);
        assert_eq!(subscribers[2].choices.subregions, ["skaraborg"]);

        let bad = "email,organisations\n\
                   not an address,Borås\n\
                   anna@boras.example,Atlantis\n\
                   bo@lerum.example,\n\
                   cia@example.org,Borås\n\
                   CIA@example.org,Skövde\n";
        let problems = read_import(bad, &inventory).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("line 2:"), "{problems:?}");
        assert!(problems[1].contains("Atlantis"), "{problems:?}");
        assert!(problems[2].contains("no organisations"), "{problems:?}");
        assert!(problems[3].contains("listed twice"), "{problems:?}");
        assert!(read_import("name\nAnna\n", &inventory).is_err());
        assert!(read_import("", &inventory).is_err());
    }

    #[test]
    fn csv_cells_may_be_quoted() {
        assert_eq!(
            split_csv_line(r#"a,"b, c","d ""e""",f"#, ','),
            ["a", "b, c", "d \"e\"", "f"]
        );
    }
}
