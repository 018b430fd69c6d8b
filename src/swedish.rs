//! Small pieces of Swedish text that people read, and the hygiene every displayed string
//! goes through.
//!
//! Times are shown in Swedish local time (Europe/Stockholm, CET in winter and CEST in
//! summer) as "28 november 2026 kl. 05:12". The time zone database is bundled into the
//! binary (jiff's `tzdb-bundle-always`), so the relay shows the same times on a host
//! without `/usr/share/zoneinfo`.
//!
//! Text from alert labels is untrusted: [`single_line`] makes any string safe for an email
//! header or a title (no line breaks, no control or direction-override characters, bounded
//! length), and [`clean_multiline`] does the same for bodies while keeping line breaks.

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The time zone every time in a notice is shown in.
pub const SWEDISH_TIME_ZONE: &str = "Europe/Stockholm";

static STOCKHOLM: LazyLock<TimeZone> = LazyLock::new(|| {
    TimeZone::get(SWEDISH_TIME_ZONE)
        .expect("Europe/Stockholm is in the time zone database bundled into the binary")
});

/// A local time in Sweden as an instant.
pub fn stockholm_time(local: jiff::civil::DateTime) -> Result<Timestamp, jiff::Error> {
    local
        .to_zoned(STOCKHOLM.clone())
        .map(|zoned| zoned.timestamp())
}

const MONTHS: [&str; 12] = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
];

/// "28 november 2026 kl. 05:12", in Swedish local time.
pub fn format_swedish_time(timestamp: Timestamp) -> String {
    let local = timestamp.to_zoned(STOCKHOLM.clone());
    format!(
        "{} {} {} kl. {:02}:{:02}",
        local.day(),
        MONTHS[usize::from(local.month().unsigned_abs()) - 1],
        local.year(),
        local.hour(),
        local.minute()
    )
}

/// A duration in words, to the minute: "2 timmar och 28 minuter", "1 dygn och 3 timmar",
/// "mindre än en minut".
pub fn format_swedish_duration(duration: std::time::Duration) -> String {
    let total_minutes = duration.as_secs() / 60;
    if total_minutes == 0 {
        return "mindre än en minut".to_owned();
    }
    let days = total_minutes / (24 * 60);
    let hours = (total_minutes / 60) % 24;
    let minutes = total_minutes % 60;
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days} dygn"));
    }
    if hours > 0 {
        parts.push(count_phrase(hours as usize, "timme", "timmar"));
    }
    // Minutes matter for short outages; after a day they are noise.
    if minutes > 0 && days == 0 {
        parts.push(count_phrase(minutes as usize, "minut", "minuter"));
    }
    join_swedish_list(&parts)
}

/// "a", "a och b", "a, b och c".
pub fn join_swedish_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [only] => only.as_ref().to_owned(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} och {}", init.join(", "), last.as_ref())
        }
    }
}

/// "1 okänd aktör", "3 okända aktörer".
pub fn count_phrase(count: usize, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("1 {singular}")
    } else {
        format!("{count} {plural}")
    }
}

/// One line of display text: every line break, control character and invisible
/// direction or formatting character becomes a space, runs of whitespace collapse, and
/// the result is cut to `max_chars` (ending with "…" when cut). Safe in an email header.
pub fn single_line(text: &str, max_chars: usize) -> String {
    let mut line = String::with_capacity(text.len().min(max_chars * 4));
    let mut pending_space = false;
    for character in text.chars() {
        if character.is_whitespace() || is_invisible_or_control(character) {
            pending_space = !line.is_empty();
            continue;
        }
        if pending_space {
            line.push(' ');
            pending_space = false;
        }
        line.push(character);
    }
    truncate_with_ellipsis(&line, max_chars)
}

/// Body text: line breaks normalised to `\n`, other control and invisible characters
/// removed, trailing spaces trimmed, at most one blank line in a row, no blank lines at
/// either end, cut to `max_chars`.
pub fn clean_multiline(text: &str, max_chars: usize) -> String {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut cleaned = String::with_capacity(normalised.len());
    let mut blank_lines = 0;
    for line in normalised.split('\n') {
        let line: String = line
            .chars()
            .map(|character| if character == '\t' { ' ' } else { character })
            .filter(|character| !is_invisible_or_control(*character))
            .collect();
        let line = line.trim_end();
        if line.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !cleaned.is_empty() {
            cleaned.push('\n');
            if blank_lines > 0 {
                cleaned.push('\n');
            }
        }
        blank_lines = 0;
        cleaned.push_str(line);
    }
    truncate_with_ellipsis(&cleaned, max_chars)
}

fn truncate_with_ellipsis(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Control characters, and the invisible characters that can reorder or hide text
/// (bidirectional overrides, zero-width characters, line and paragraph separators).
fn is_invisible_or_control(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_swedish_local_time_in_winter_and_summer() {
        for (utc, expected) in [
            ("2026-11-28T04:12:00Z", "28 november 2026 kl. 05:12"),
            ("2026-07-03T22:05:00Z", "4 juli 2026 kl. 00:05"),
            ("2026-01-01T00:00:00Z", "1 januari 2026 kl. 01:00"),
            ("2026-12-31T23:59:59Z", "1 januari 2027 kl. 00:59"),
            // The switch to summer time: 02:00 CET becomes 03:00 CEST on 29 March 2026.
            ("2026-03-29T00:59:00Z", "29 mars 2026 kl. 01:59"),
            ("2026-03-29T01:00:00Z", "29 mars 2026 kl. 03:00"),
            ("2026-10-25T00:30:00Z", "25 oktober 2026 kl. 02:30"),
            ("2026-10-25T01:30:00Z", "25 oktober 2026 kl. 02:30"),
        ] {
            let timestamp: Timestamp = utc.parse().unwrap();
            assert_eq!(format_swedish_time(timestamp), expected, "{utc}");
        }
    }

    #[test]
    fn durations_read_as_words() {
        for (seconds, expected) in [
            (0, "mindre än en minut"),
            (59, "mindre än en minut"),
            (60, "1 minut"),
            (45 * 60, "45 minuter"),
            (3600, "1 timme"),
            (2 * 3600 + 28 * 60, "2 timmar och 28 minuter"),
            (26 * 3600 + 5 * 60, "1 dygn och 2 timmar"),
            (3 * 86_400, "3 dygn"),
        ] {
            assert_eq!(
                format_swedish_duration(std::time::Duration::from_secs(seconds)),
                expected
            );
        }
    }

    #[test]
    fn lists_join_with_och() {
        assert_eq!(join_swedish_list::<&str>(&[]), "");
        assert_eq!(join_swedish_list(&["Ale"]), "Ale");
        assert_eq!(join_swedish_list(&["Ale", "Lerum"]), "Ale och Lerum");
        assert_eq!(
            join_swedish_list(&["Ale", "Lerum", "Tjörn"]),
            "Ale, Lerum och Tjörn"
        );
    }

    #[test]
    fn single_lines_cannot_break_a_header() {
        assert_eq!(
            single_line("Ämne\r\nBcc: evil@example.com", 200),
            "Ämne Bcc: evil@example.com"
        );
        assert_eq!(single_line("  a\u{202E}b\u{200B}c\t\0d  ", 200), "a b c d");
        assert_eq!(single_line("abcdefghij", 5), "abcd…");
        assert_eq!(single_line("åäö", 3), "åäö");
        assert!(single_line(&"x".repeat(10_000), 200).chars().count() <= 200);
    }

    #[test]
    fn multiline_text_keeps_paragraphs_and_drops_control_characters() {
        assert_eq!(
            clean_multiline("\n\nRad 1  \r\nRad\u{7} 2\r\r\n\n\nRad 3\n\n", 1000),
            "Rad 1\nRad 2\n\nRad 3"
        );
    }
}
