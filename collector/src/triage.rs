//! Alert triage: which status an alert may move to, assignees and notes; every change is
//! written with its audit line in one transaction.

use crate::store::{Alert, AlertChange, AlertStatus, Store, StoreError};
use crate::Actor;
use holdfast_shared::time::UnixMs;

/// The statuses an alert can have, in their usual order.
pub const STATUSES: &[&str] = &["new", "triaged", "resolved", "false_positive"];

/// The statuses an alert list can filter on: those, and `merged` (folded into a correlated
/// alert by the collector; not a status anyone sets).
pub const FILTER_STATUSES: &[&str] = &["new", "triaged", "resolved", "false_positive", "merged"];

/// Longest note, in bytes.
pub const MAX_NOTE: usize = 4096;
/// Longest assignee name, in bytes.
pub const MAX_ASSIGNEE: usize = 128;

/// Why an alert could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// There is no alert with this id.
    #[error("no alert {0}")]
    NotFound(i64),
    /// The status is not one of [`STATUSES`].
    #[error("status `{0}` is not one of new, triaged, resolved, false_positive")]
    BadStatus(String),
    /// The move is not allowed (nothing goes back to `new`).
    #[error("alert {id} cannot move from {from} to {to}")]
    Transition { id: i64, from: String, to: String },
    /// The note is empty or longer than [`MAX_NOTE`].
    #[error("a note must have 1 to {MAX_NOTE} bytes of text")]
    BadNote,
    /// The assignee name is longer than [`MAX_ASSIGNEE`] or has control characters.
    #[error(
        "an assignee must be a name of at most {MAX_ASSIGNEE} bytes without control characters"
    )]
    BadAssignee,
    /// The change has nothing in it.
    #[error("nothing to change: give a status, an assignee or a note")]
    Empty,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A status someone may set (any but `merged`), from its name.
pub fn settable(name: &str) -> Result<AlertStatus, TriageError> {
    AlertStatus::parse(name)
        .filter(|s| *s != AlertStatus::Merged)
        .ok_or_else(|| TriageError::BadStatus(name.to_string()))
}

/// Whether an alert may move from `from` to `to`: new → triaged → resolved or
/// false_positive, any open alert straight to a verdict, and a verdict back to triaged
/// (reopened). Staying put is allowed and changes nothing.
pub fn allowed(from: AlertStatus, to: AlertStatus) -> bool {
    use AlertStatus::{FalsePositive, New, Resolved, Triaged};
    from == to
        || matches!(
            (from, to),
            (New, Triaged | Resolved | FalsePositive)
                | (Triaged, Resolved | FalsePositive)
                | (Resolved | FalsePositive, Triaged)
                | (Resolved, FalsePositive)
                | (FalsePositive, Resolved)
        )
}

/// Checks a change against the alert's current state, drops the parts that change nothing,
/// applies the rest with audit lines, and returns the alert as it now is.
pub fn change(
    store: &mut Store,
    id: i64,
    change: &AlertChange,
    actor: &Actor,
    now_ms: UnixMs,
) -> Result<Alert, TriageError> {
    if change.status.is_none() && change.assignee.is_none() && change.note.is_none() {
        return Err(TriageError::Empty);
    }
    let alert = store.alert(id)?.ok_or(TriageError::NotFound(id))?;
    let mut effective = AlertChange::default();
    if let Some(to) = change.status {
        if to == AlertStatus::Merged {
            return Err(TriageError::BadStatus(to.to_string()));
        }
        if !allowed(alert.status, to) {
            return Err(TriageError::Transition {
                id,
                from: alert.status.to_string(),
                to: to.to_string(),
            });
        }
        if to != alert.status {
            effective.status = Some(to);
        }
    }
    if let Some(assignee) = &change.assignee {
        let assignee = assignee
            .as_ref()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty());
        if let Some(a) = &assignee {
            if a.len() > MAX_ASSIGNEE || a.chars().any(char::is_control) {
                return Err(TriageError::BadAssignee);
            }
        }
        if assignee != alert.assignee {
            effective.assignee = Some(assignee);
        }
    }
    if let Some(note) = &change.note {
        let note = note.trim();
        if note.is_empty() || note.len() > MAX_NOTE {
            return Err(TriageError::BadNote);
        }
        effective.note = Some(note.to_string());
    }
    if effective != AlertChange::default() {
        // The store writes one line per part of the change from this template.
        let audit = crate::store::AuditEntry::by(actor, now_ms, "", "", String::new());
        store.change_alert(id, &effective, &actor.who, &audit)?;
    }
    store.alert(id)?.ok_or(TriageError::NotFound(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(from: &str, to: &str, want: bool) {
        let status = |s| AlertStatus::parse(s).unwrap();
        assert_eq!(allowed(status(from), status(to)), want, "{from} -> {to}");
    }

    #[test]
    fn nothing_goes_back_to_new_and_verdicts_can_be_reopened() {
        check("new", "triaged", true);
        check("new", "resolved", true);
        check("new", "false_positive", true);
        check("triaged", "resolved", true);
        check("triaged", "new", false);
        check("resolved", "new", false);
        check("false_positive", "new", false);
        check("resolved", "triaged", true);
        check("resolved", "resolved", true);
        // Only the collector merges; an unknown name is refused before any move is weighed.
        check("new", "merged", false);
        check("triaged", "merged", false);
        assert_eq!(AlertStatus::parse("bogus"), None);
        // What may be set: the four names, never `merged` or an unknown one.
        for name in STATUSES {
            assert_eq!(settable(name).map(AlertStatus::as_str).ok(), Some(*name));
        }
        for name in ["merged", "bogus", "New", ""] {
            assert!(matches!(settable(name), Err(TriageError::BadStatus(n)) if n == name));
        }
        // The API's lists of names are the enum's.
        let names: Vec<&str> = AlertStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(FILTER_STATUSES, names.as_slice());
        assert_eq!(STATUSES, &names[..4]);
        assert!(AlertStatus::ALL
            .iter()
            .all(|s| AlertStatus::parse(s.as_str()) == Some(*s)));
    }
}
