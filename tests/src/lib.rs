//! Test support for Streamplane, used by the integration tests of the control plane and the worker and by the
//! end-to-end tests in `tests/tests/`:
//!
//! - [`postgres()`]: one private, throwaway Postgres per test process (or the server in `DATABASE_URL`), and
//!   [`Postgres::fresh_database`] for an empty database per test;
//! - [`free_port`], [`free_udp_port`], [`free_udp_port_pair`];
//! - [`eventually`]: wait for a condition with a deadline (never sleep blindly);
//! - [`bin`] and [`Process`]: run the real binaries, capture and echo their output, wait for lines and exits;
//! - [`ControlPlane`] and [`Worker`]: start `streamplane-control` and `streamplane-worker` on free ports with a
//!   fresh database, wait until they are ready, log in.
//!
//! Failures panic with a message that says what was awaited and shows the relevant output: in a test, the panic
//! is the report. The binaries must be built first (`cargo build --workspace`; `cargo test --workspace` does it).

mod cluster;
pub mod media;
mod paths;
mod ports;
mod postgres;
mod process;
mod wait;

pub use cluster::{
    ControlPlane, ControlPlaneBuilder, STARTUP_DEADLINE, WORKER_LISTEN_ENVS, Worker, WorkerBuilder,
};
pub use paths::{bin, bin_dir, repo_root};
pub use ports::{free_port, free_udp_port, free_udp_port_pair};
pub use postgres::{Postgres, postgres};
pub use process::{Process, ProcessBuilder, Stream};
pub use wait::{Attempt, POLL_INTERVAL, eventually};

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A random string of ASCII letters and digits: passwords, tokens, names. Not for production secrets, but
/// unpredictable enough that parallel tests never collide.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // Every RandomState has fresh random keys; the counter makes each call distinct even if it did not.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut bits = hasher.finish();
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(char::from(
                ALPHABET[(bits % ALPHABET.len() as u64) as usize],
            ));
            bits /= ALPHABET.len() as u64;
        }
    }
    out
}

/// A name unique within this machine for the lifetime of the test run: `prefix`, the process id and a random
/// suffix, lowercase, safe as a Postgres identifier, path name or worker name.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        random_token(10).to_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_have_the_length_and_alphabet_and_differ() {
        let a = random_token(24);
        let b = random_token(24);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
        assert_eq!(random_token(0), "");
        assert_eq!(random_token(37).len(), 37);
    }

    #[test]
    fn unique_names_are_lowercase_identifiers() {
        let name = unique_name("db");
        assert!(name.starts_with("db_"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        assert_ne!(unique_name("db"), name);
    }
}
