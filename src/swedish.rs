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

const WEEKDAYS: [&str; 7] = [
    "måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag",
];

/// "tisdag 8 december 2026 kl. 18:00", in Swedish local time.
fn format_swedish_weekday_time(local: &jiff::Zoned) -> String {
    format!(
        "{} {} {} {} kl. {:02}:{:02}",
        WEEKDAYS[usize::from(local.weekday().to_monday_zero_offset().unsigned_abs())],
        local.day(),
        MONTHS[usize::from(local.month().unsigned_abs()) - 1],
        local.year(),
        local.hour(),
        local.minute()
    )
}

/// A period in Swedish local time, with the weekday: "tisdag 8 december 2026 kl.
/// 18:00–22:00" within one day, "tisdag 8 december 2026 kl. 22:00 – onsdag 9 december
/// 2026 kl. 04:00" across days.
pub fn format_swedish_period(start: Timestamp, end: Timestamp) -> String {
    let start = start.to_zoned(STOCKHOLM.clone());
    let end = end.to_zoned(STOCKHOLM.clone());
    if start.date() == end.date() {
        format!(
            "{}–{:02}:{:02}",
            format_swedish_weekday_time(&start),
            end.hour(),
            end.minute()
        )
    } else {
        format!(
            "{} – {}",
            format_swedish_weekday_time(&start),
            format_swedish_weekday_time(&end)
        )
    }
}

/// How far ahead `to` lies, seen at `from`: "om 1 timme", "om 30 minuter" when under 12
/// hours away, else by Swedish calendar days: "i dag", "i morgon", "i övermorgon", "om 5
/// dagar".
pub fn format_swedish_time_until(from: Timestamp, to: Timestamp) -> String {
    let ahead = std::time::Duration::try_from(to.duration_since(from)).unwrap_or_default();
    if ahead < std::time::Duration::from_secs(12 * 3600) {
        return format!("om {}", format_swedish_duration(ahead));
    }
    let days = from
        .to_zoned(STOCKHOLM.clone())
        .date()
        .until(to.to_zoned(STOCKHOLM.clone()).date())
        .map(|span| i64::from(span.get_days()))
        .unwrap_or_default();
    match days {
        ..=0 => "i dag".to_owned(),
        1 => "i morgon".to_owned(),
        2 => "i övermorgon".to_owned(),
        _ => format!("om {days} dagar"),
    }
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
    fn periods_have_weekdays_and_both_dates_across_days() {
        for (start, end, expected) in [
            (
                "2026-12-08T17:00:00Z",
                "2026-12-08T21:00:00Z",
                "tisdag 8 december 2026 kl. 18:00–22:00",
            ),
            (
                "2026-12-08T21:00:00Z",
                "2026-12-09T03:30:00Z",
                "tisdag 8 december 2026 kl. 22:00 – onsdag 9 december 2026 kl. 04:30",
            ),
            // Summer time: 16:00 UTC is 18:00 CEST; 22:30 UTC is past midnight.
            (
                "2026-06-14T16:00:00Z",
                "2026-06-14T22:30:00Z",
                "söndag 14 juni 2026 kl. 18:00 – måndag 15 juni 2026 kl. 00:30",
            ),
        ] {
            let period = format_swedish_period(start.parse().unwrap(), end.parse().unwrap());
            assert_eq!(period, expected);
        }
    }

    #[test]
    fn time_until_reads_in_hours_or_calendar_days() {
        let start: Timestamp = "2026-12-08T17:00:00Z".parse().unwrap();
        for (minutes_before, expected) in [
            (30, "om 30 minuter"),
            (60, "om 1 timme"),
            (6 * 60, "om 6 timmar"),
            // 05:00 the same day.
            (13 * 60, "i dag"),
            (24 * 60, "i morgon"),
            (48 * 60, "i övermorgon"),
            (7 * 24 * 60, "om 7 dagar"),
        ] {
            let from = start
                .checked_sub(jiff::SignedDuration::from_mins(minutes_before))
                .unwrap();
            assert_eq!(format_swedish_time_until(from, start), expected);
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
