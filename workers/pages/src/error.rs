//! The error every step returns, and what the runtime should do about it.

use std::time::Duration;

pub use schemas::ErrorKind;

/// What the runtime should do with a page whose step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A transient condition: try the page again after the delay
    /// (JetStream: nak with delay).
    After(Duration),
    /// It can never succeed: record the failure and dead-letter the page
    /// (JetStream: term).
    Never,
}

/// A step failure: a stable kind, a retry hint and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub kind: ErrorKind,
    pub retry: Retry,
    pub message: String,
}

impl StepError {
    /// A failure that retrying cannot fix.
    pub fn reject(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepError { kind, retry: Retry::Never, message: message.into() }
    }

    /// A transient failure worth retrying after `delay`.
    pub fn retry_after(kind: ErrorKind, delay: Duration, message: impl Into<String>) -> Self {
        StepError { kind, retry: Retry::After(delay), message: message.into() }
    }

    /// A bug or an unexpected condition; not retried.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::reject(ErrorKind::Internal, message)
    }
}
