//! A line diff for the review page: what an update changes against the notice published
//! before it. Longest common subsequence over lines; notices are short (tens of lines),
//! and texts longer than [`MAX_LINES`] are shown as wholly replaced rather than compared.

/// Longer texts are not compared line by line (the table would be `MAX_LINES`² cells).
const MAX_LINES: usize = 400;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The lines of `before` and `after`, each marked as kept, removed or added, in the order
/// a reader follows them (removals before the additions that replace them).
pub(super) fn lines<'a>(before: &'a str, after: &'a str) -> Vec<Line<'a>> {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    if old.len() > MAX_LINES || new.len() > MAX_LINES {
        return old
            .iter()
            .map(|line| Line::Removed(line))
            .chain(new.iter().map(|line| Line::Added(line)))
            .collect();
    }
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0u32; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut diff = Vec::with_capacity(old.len() + new.len());
    while i < old.len() && j < new.len() {
        if old[i] == new[j] {
            diff.push(Line::Same(old[i]));
            i += 1;
            j += 1;
        } else if common[i + 1][j] >= common[i][j + 1] {
            diff.push(Line::Removed(old[i]));
            i += 1;
        } else {
            diff.push(Line::Added(new[j]));
            j += 1;
        }
    }
    diff.extend(old[i..].iter().map(|line| Line::Removed(line)));
    diff.extend(new[j..].iter().map(|line| Line::Added(line)));
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_removed_and_added_lines_in_reading_order() {
        let before = "Driftstörning\nBeräknas vara löst: ännu inte känt\nKontakta oss";
        let after = "Driftstörning\nBeräknas vara löst: kl. 09:30\nNästa uppdatering: kl. 09:00\nKontakta oss";
        assert_eq!(
            lines(before, after),
            [
                Line::Same("Driftstörning"),
                Line::Removed("Beräknas vara löst: ännu inte känt"),
                Line::Added("Beräknas vara löst: kl. 09:30"),
                Line::Added("Nästa uppdatering: kl. 09:00"),
                Line::Same("Kontakta oss"),
            ]
        );
        assert!(
            lines("a\nb", "a\nb")
                .iter()
                .all(|line| matches!(line, Line::Same(_)))
        );
        assert_eq!(lines("", "ny"), [Line::Added("ny")]);
        assert_eq!(lines("gammal", ""), [Line::Removed("gammal")]);
    }

    #[test]
    fn very_long_texts_are_shown_as_replaced() {
        let before = "x\n".repeat(MAX_LINES + 1);
        let diff = lines(&before, "x");
        assert_eq!(diff.len(), MAX_LINES + 2);
        assert_eq!(diff.last(), Some(&Line::Added("x")));
    }
}
