//! The stored states of incidents, drafts and deliveries as types. Storage maps each to
//! and from its text form (`as_str`/`parse`) at its edge, so that everything above it
//! matches on variants; an unknown text is a storage error, never a silent default.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a state enum with its one text form each way. Besides `as_str` and `parse`,
/// each compares equal to its text (`draft.state == "pending"`), which keeps the
/// assertions of tests written against the text form unchanged.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text form, as stored and as shown in logs and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value of a text form; `None` for any other text.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, text: &str) -> bool {
                self.as_str() == text
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, text: &&str) -> bool {
                self.as_str() == *text
            }
        }
    };
}
pub(crate) use text_enum;

text_enum! {
    /// What an incident is about. At most one of each kind is open at a time.
    IncidentKind {
        /// An outage of the service, correlated from alerts; the only kind with public
        /// notices drafted by the relay.
        Outage = "outage",
        /// The monitoring chain is broken (no Watchdog): internal, never public.
        Monitoring = "monitoring",
        /// An exercise an operator started; its notices are marked as a drill.
        Drill = "drill",
        /// Planned maintenance: a window an operator announced ahead
        /// (`crate::maintenance`). Several may be open at once.
        Maintenance = "maintenance",
    }
}

text_enum! {
    /// Where a draft stands. At most one draft per incident is pending.
    DraftState {
        /// Waiting for an operator.
        Pending = "pending",
        /// An operator published it (final).
        Published = "published",
        /// The relay withdrew it: what it said is no longer true (final).
        Withdrawn = "withdrawn",
        /// An operator discarded it (final).
        Discarded = "discarded",
    }
}

text_enum! {
    /// Where one delivery (an outbox row or an operator email) stands.
    DeliveryState {
        /// Not sent yet: due now or after a backoff, perhaps leased by a worker.
        Pending = "pending",
        /// Sent (final).
        Sent = "sent",
        /// Failed for good (an operator may make it pending again).
        Failed = "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_text() {
        for kind in IncidentKind::ALL {
            assert_eq!(IncidentKind::parse(kind.as_str()), Some(*kind));
        }
        for state in DraftState::ALL {
            assert_eq!(DraftState::parse(state.as_str()), Some(*state));
        }
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(*state));
        }
        assert_eq!(DraftState::parse("Pending"), None);
        assert_eq!(
            serde_json::to_value(IncidentKind::Drill).unwrap(),
            serde_json::json!("drill")
        );
        assert!(DraftState::Pending == "pending");
    }
}
