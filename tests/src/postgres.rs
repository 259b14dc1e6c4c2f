//! One Postgres server per test process, and an empty database per test.
//!
//! With `DATABASE_URL` set (as under `scripts/pg run -- cargo test`), every test process shares that server.
//! Otherwise the first call starts a private one with `scripts/pg start` on a scratch directory; `PG_OWNER_PID`
//! makes its watchdog stop and delete it once this process has exited, since statics are never dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use reqwest::Url;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::{repo_root, unique_name};

/// A Postgres server for tests. See [`postgres()`].
#[derive(Debug)]
pub struct Postgres {
    /// Superuser URL of a database on the server, used to create the others.
    url: String,
    /// The scratch directory of a private server; `None` for the server in `DATABASE_URL`.
    dir: Option<PathBuf>,
}

/// The test process's Postgres server, started on first use (about a second).
pub fn postgres() -> &'static Postgres {
    static POSTGRES: OnceLock<Postgres> = OnceLock::new();
    POSTGRES.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Postgres {
            url: url.trim().to_string(),
            dir: None,
        },
        _ => Postgres::start_private(),
    })
}

impl Postgres {
    fn start_private() -> Postgres {
        let script = repo_root().join("scripts/pg");
        let dir = run_script(&script, &["mktemp"], None);
        let dir = PathBuf::from(dir.trim());
        let out = run_script(
            &script,
            &["start", &dir.to_string_lossy()],
            Some(std::process::id()),
        );
        let url = out
            .lines()
            .find_map(|l| l.strip_prefix("DATABASE_URL="))
            .unwrap_or_else(|| {
                panic!("scripts/pg start printed no DATABASE_URL= line; it printed: {out:?}")
            })
            .to_string();
        Postgres {
            url,
            dir: Some(dir),
        }
    }

    /// The URL of the server's default database (`streamplane` for a private server). Tests that change schema
    /// should use [`Postgres::fresh_database`] instead.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The private server's directory (data, `postgres.log`), or `None` when the server came from `DATABASE_URL`.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Creates an empty database with a unique name and returns its URL. Tests apply migrations themselves
    /// (`sqlx::migrate!` in-process, or `streamplane-control migrate`). Databases are not dropped: a private
    /// server is deleted with everything in it, and a shared one (`scripts/pg run`) at the end of the run.
    pub async fn fresh_database(&self) -> String {
        let name = unique_name("sptest");
        let mut conn = PgConnection::connect(&self.url).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to Postgres at {}: {e}\nhint: unset DATABASE_URL to let the testkit start a \
                 private server, or run the tests under scripts/pg run -- cargo test",
                redact(&self.url)
            )
        });
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CREATE DATABASE {name} on {} failed: {e}",
                    redact(&self.url)
                )
            });
        // Closing cleanly spares the server a "connection reset" log line per test.
        let _closed = conn.close().await;
        database_url(&self.url, &name)
    }
}

/// `base` with its database replaced by `name`; query parameters (sslmode, …) are kept.
fn database_url(base: &str, name: &str) -> String {
    let mut url =
        Url::parse(base).unwrap_or_else(|e| panic!("invalid database URL {}: {e}", redact(base)));
    url.set_path(&format!("/{name}"));
    url.into()
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.into()
        }
        Err(_) => "(unparseable URL)".to_string(),
    }
}

fn run_script(script: &Path, args: &[&str], owner_pid: Option<u32>) -> String {
    let mut cmd = Command::new(script);
    cmd.args(args).stdin(std::process::Stdio::null());
    if let Some(pid) = owner_pid {
        cmd.env("PG_OWNER_PID", pid.to_string());
    }
    // A DATABASE_URL would make nothing here misbehave, but keep the script's environment predictable.
    cmd.env_remove("DATABASE_URL");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", script.display(), args.join(" ")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        panic!(
            "{} {} failed ({}):\n{stderr}\nhint: scripts/pg installs the postgresql package when it is missing; \
             that needs root or sudo",
            script.display(),
            args.join(" "),
            out.status
        );
    }
    // The script's progress lines, shown with the test's output when it fails.
    for line in stderr.lines() {
        eprintln!("[pg] {line}");
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[test]
    fn database_urls_keep_credentials_and_parameters() {
        assert_eq!(
            database_url(
                "postgres://u:p@127.0.0.1:5432/streamplane?sslmode=disable",
                "t1"
            ),
            "postgres://u:p@127.0.0.1:5432/t1?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://u@h:1", "t2"),
            "postgres://u@h:1/t2"
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[tokio::test]
    async fn fresh_databases_are_distinct_and_empty() {
        let a = postgres().fresh_database().await;
        let b = postgres().fresh_database().await;
        assert_ne!(a, b);
        let mut conn_a = PgConnection::connect(&a)
            .await
            .expect("connect to the first fresh database");
        conn_a
            .execute("CREATE TABLE only_in_a (x int)")
            .await
            .expect("create a table");
        let mut conn_b = PgConnection::connect(&b)
            .await
            .expect("connect to the second fresh database");
        let row = sqlx::query("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'")
            .fetch_one(&mut conn_b)
            .await
            .expect("query the catalog");
        assert_eq!(row.get::<i64, _>(0), 0, "databases must not share tables");
        let row = sqlx::query("SELECT current_database()")
            .fetch_one(&mut conn_a)
            .await
            .expect("query");
        assert!(a.ends_with(&format!("/{}", row.get::<String, _>(0))), "{a}");
    }

    #[tokio::test]
    async fn a_private_server_is_tuned_for_tests() {
        let pg = postgres();
        if pg.dir().is_none() {
            // A server from DATABASE_URL is configured by whoever started it.
            return;
        }
        let mut conn = PgConnection::connect(pg.url()).await.expect("connect");
        for (setting, want) in [
            ("fsync", "off"),
            ("max_connections", "300"),
            ("listen_addresses", "127.0.0.1"),
        ] {
            let row = sqlx::query(AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(&mut conn)
                .await
                .expect("SHOW");
            assert_eq!(row.get::<String, _>(0), want, "{setting}");
        }
    }
}
