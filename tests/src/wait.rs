//! Waiting for conditions with a deadline, instead of sleeping and hoping.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] retries.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The outcome of one attempt of [`eventually`]: `Some`/`Ok`/`true` ends the wait, anything else is retried and
/// remembered as the last error.
pub trait Attempt {
    type Output;
    fn into_attempt(self) -> Result<Self::Output, String>;
}

impl<T> Attempt for Option<T> {
    type Output = T;
    fn into_attempt(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet (None)".to_string())
    }
}

impl<T, E: Display> Attempt for Result<T, E> {
    type Output = T;
    fn into_attempt(self) -> Result<T, String> {
        // `{:#}` prints an anyhow error with its causes on one line.
        self.map_err(|e| format!("{e:#}"))
    }
}

impl Attempt for bool {
    type Output = ();
    fn into_attempt(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("not yet (false)".to_string())
        }
    }
}

/// How long an attempt that is still running at the deadline may take to finish, so that the last error is a
/// real answer rather than "still running"; after that it is abandoned.
const LAST_ATTEMPT_GRACE: Duration = Duration::from_secs(1);

/// Calls `f` every [`POLL_INTERVAL`] until it returns `Some`, `Ok` or `true`, and returns the value.
///
/// Panics after `deadline` with `what`, the caller's location and the last error. An attempt still running at
/// the deadline gets [`LAST_ATTEMPT_GRACE`] to finish, then is abandoned (so a hung request cannot hang the test).
///
/// ```no_run
/// # async fn f(url: &str) {
/// use std::time::Duration;
/// let body = streamplane_testkit::eventually(Duration::from_secs(5), "the worker's metrics", || async {
///     reqwest::get(url).await?.error_for_status()?.text().await
/// })
/// .await;
/// # }
/// ```
// Not an `async fn`: `#[track_caller]` must see the call, not the first poll.
#[track_caller]
pub fn eventually<A, F, Fut>(
    deadline: Duration,
    what: &str,
    mut f: F,
) -> impl Future<Output = A::Output>
where
    A: Attempt,
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    let caller = std::panic::Location::caller();
    async move {
        let until = Instant::now() + deadline;
        let mut attempts = 0u32;
        let mut last_error = String::from("no attempt finished");
        loop {
            attempts += 1;
            // Timeout polls the future before the timer, so a ready answer counts even past the deadline.
            match tokio::time::timeout_at(until + LAST_ATTEMPT_GRACE, f()).await {
                Ok(attempt) => match attempt.into_attempt() {
                    Ok(value) => return value,
                    Err(e) => last_error = e,
                },
                Err(_) => panic!(
                    "timed out after {deadline:?} waiting for {what} (at {caller}): attempt {attempts} was still \
                     running {LAST_ATTEMPT_GRACE:?} after the deadline (the one before failed with: {last_error})"
                ),
            }
            let now = Instant::now();
            if now >= until {
                panic!(
                    "timed out after {deadline:?} waiting for {what} (at {caller}, {attempts} attempts); \
                     last error: {last_error}"
                );
            }
            tokio::time::sleep_until((now + POLL_INTERVAL).min(until)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_success() {
        let calls = AtomicU32::new(0);
        let value = eventually(Duration::from_secs(5), "the third call", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n >= 3).then_some(n)
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn accepts_results_and_bools() {
        let calls = AtomicU32::new(0);
        let value: u32 = eventually(Duration::from_secs(5), "an Ok", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err("first call fails"),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(value, 1);
        eventually(Duration::from_secs(5), "true", || async { true }).await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the moon (at tests/src/wait.rs:")]
    async fn times_out_with_what_was_awaited() {
        eventually(Duration::from_millis(100), "the moon", || async {
            None::<()>
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "last error: connection refused")]
    async fn times_out_with_the_last_error() {
        eventually(Duration::from_millis(100), "a server", || async {
            Err::<(), _>("connection refused")
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "was still running 1s after the deadline")]
    async fn abandons_a_hung_attempt() {
        eventually(Duration::from_millis(100), "a hung request", || async {
            std::future::pending::<Option<()>>().await
        })
        .await;
    }

    #[tokio::test]
    async fn polls_every_interval_until_the_deadline() {
        let calls = std::sync::Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let outcome = tokio::spawn(async move {
            eventually(Duration::from_millis(200), "never", || async {
                counter.fetch_add(1, Ordering::SeqCst);
                false
            })
            .await;
        })
        .await;
        assert!(outcome.is_err(), "eventually must panic at the deadline");
        // At most one attempt per interval plus the one at the deadline; at least the first and the last.
        let calls = calls.load(Ordering::SeqCst);
        assert!((2..=9).contains(&calls), "{calls} attempts in 200 ms");
    }
}
