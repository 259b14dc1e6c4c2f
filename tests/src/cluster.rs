//! The real binaries, started the way an operator would: [`ControlPlane`] on a fresh database and free ports,
//! [`Worker`]s enrolled with it. Builders take extra variables and arguments, so tests of later features can
//! configure anything the binaries accept.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::{POLL_INTERVAL, Process, bin, free_port, postgres, random_token, unique_name};

/// How long a binary may take to become ready (debug builds on a loaded 2-core machine are slow to start).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a start is retried when another process took a port between [`free_port`] and the bind.
const PORT_RACE_RETRIES: usize = 3;

/// Listen-address variables a [`Worker`] gets a free `127.0.0.1` port for by default, so parallel tests never
/// fight over the worker's default ports. Add each new listener of the worker here (HLS, WebRTC, …); variables a
/// binary does not know yet are only warned about.
pub const WORKER_LISTEN_ENVS: [&str; 4] = [
    "STREAMPLANE_METRICS_ADDRESS",
    "STREAMPLANE_RTSP_ADDRESS",
    "STREAMPLANE_RTP_ADDRESS",
    "STREAMPLANE_RTCP_ADDRESS",
];

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        // Never send loopback requests through a proxy from the environment.
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a reqwest client with default TLS-less settings builds")
}

/// Why a start attempt failed.
enum StartError {
    /// Another process took a port between choosing and binding it: worth another try with new ports.
    PortTaken,
}

/// Polls `url` until it answers 200 while `process` runs. Panics when the process exits (except for a port
/// race, which the caller retries) or the deadline passes.
async fn wait_http_ok(
    process: &Process,
    url: &str,
    http: &reqwest::Client,
) -> Result<(), StartError> {
    let until = Instant::now() + STARTUP_DEADLINE;
    loop {
        let last = match http.get(url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => format!(
                "HTTP {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ),
            Err(e) => format!("{e}"),
        };
        if let Some(status) = process.try_status() {
            process.wait_exit(Duration::from_secs(1)).await; // drain the last lines
            if process.output().to_lowercase().contains("in use") {
                return Err(StartError::PortTaken);
            }
            panic!(
                "{} exited ({status}) before {url} answered 200; output:\n{}",
                process.name(),
                process.tail()
            );
        }
        if Instant::now() >= until {
            panic!(
                "{} not ready after {STARTUP_DEADLINE:?}: GET {url} last gave {last}; output:\n{}",
                process.name(),
                process.tail()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Parses an address variable's value as the binaries accept it (`127.0.0.1:9997`, `:9997`, `0.0.0.0:9997`) into
/// the address a client on this machine connects to; `None` for a value that is not an address (a test of
/// invalid configuration).
fn client_addr(value: &str) -> Option<SocketAddr> {
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    let addr: SocketAddr = full.parse().ok()?;
    Some(if addr.ip().is_unspecified() {
        loopback(addr.port())
    } else {
        addr
    })
}

/// Starts a [`ControlPlane`]. Everything has a default; see each method.
#[derive(Debug, Clone)]
pub struct ControlPlaneBuilder {
    name: String,
    database_url: Option<String>,
    enrollment_token: String,
    admin_password: Option<String>,
    api_address: Option<SocketAddr>,
    grpc_address: Option<SocketAddr>,
    migrate: bool,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        ControlPlaneBuilder {
            name: "control".into(),
            database_url: None,
            enrollment_token: random_token(32),
            admin_password: Some(random_token(24)),
            api_address: None,
            grpc_address: None,
            migrate: true,
            env: Vec::new(),
            args: Vec::new(),
        }
    }
}

impl ControlPlaneBuilder {
    /// The prefix of its echoed output (default `control`; name them when a test runs several).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Use this database instead of a fresh one (two control planes on one database, or a restart).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Default: random.
    pub fn enrollment_token(mut self, token: impl Into<String>) -> Self {
        self.enrollment_token = token.into();
        self
    }

    /// Default: random, passed as `STREAMPLANE_ADMIN_PASSWORD`.
    pub fn admin_password(mut self, password: impl Into<String>) -> Self {
        self.admin_password = Some(password.into());
        self
    }

    /// Start without `STREAMPLANE_ADMIN_PASSWORD`, so that the control plane generates and prints one
    /// ([`ControlPlane::admin_password`] then reads it from the output).
    pub fn without_admin_password(mut self) -> Self {
        self.admin_password = None;
        self
    }

    /// Default: a free port on 127.0.0.1.
    pub fn api_address(mut self, addr: SocketAddr) -> Self {
        self.api_address = Some(addr);
        self
    }

    /// Default: a free port on 127.0.0.1.
    pub fn grpc_address(mut self, addr: SocketAddr) -> Self {
        self.grpc_address = Some(addr);
        self
    }

    /// Whether to run `streamplane-control migrate` before starting (default: yes).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// An extra variable; it overrides the builder's own (e.g. `STREAMPLANE_LOG_LEVEL=debug`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the control plane and waits until `GET /readyz` answers 200.
    pub async fn start(self) -> ControlPlane {
        self.launch(true).await
    }

    /// Starts the control plane without waiting for readiness (for tests of failing starts: use
    /// [`ControlPlane::process`] to wait for its exit or a line). With an invalid configuration, also pass
    /// `.migrate(false)`: the `migrate` step would fail first.
    pub async fn spawn(self) -> ControlPlane {
        self.launch(false).await
    }

    async fn launch(mut self, wait: bool) -> ControlPlane {
        if self.database_url.is_none() {
            self.database_url = Some(postgres().fresh_database().await);
        }
        let pinned = self.api_address.is_some() || self.grpc_address.is_some();
        let attempts = if pinned { 1 } else { PORT_RACE_RETRIES };
        for attempt in 1..=attempts {
            let api = self.api_address.unwrap_or_else(|| loopback(free_port()));
            let grpc = self.grpc_address.unwrap_or_else(|| loopback(free_port()));
            let mut env = vec![
                (
                    "STREAMPLANE_DATABASE_URL".to_string(),
                    self.database_url.clone().unwrap_or_default(),
                ),
                ("STREAMPLANE_API_ADDRESS".to_string(), api.to_string()),
                ("STREAMPLANE_GRPC_ADDRESS".to_string(), grpc.to_string()),
                (
                    "STREAMPLANE_ENROLLMENT_TOKEN".to_string(),
                    self.enrollment_token.clone(),
                ),
            ];
            if let Some(password) = &self.admin_password {
                env.push(("STREAMPLANE_ADMIN_PASSWORD".to_string(), password.clone()));
            }
            env.extend(self.env.iter().cloned());
            // Honour addresses given through env(): they win over the builder's.
            let value = |key: &str| {
                env.iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let api = value("STREAMPLANE_API_ADDRESS")
                .and_then(|v| client_addr(&v))
                .unwrap_or(api);
            let grpc = value("STREAMPLANE_GRPC_ADDRESS")
                .and_then(|v| client_addr(&v))
                .unwrap_or(grpc);

            if self.migrate {
                let migrate = Process::builder(bin("streamplane-control"))
                    .name(format!("{}-migrate", self.name))
                    .arg("migrate")
                    .args(&self.args)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .spawn();
                let status = migrate.wait_exit(STARTUP_DEADLINE).await;
                assert!(
                    status.success(),
                    "streamplane-control migrate failed ({status}):\n{}",
                    migrate.tail()
                );
            }
            let process = Process::builder(bin("streamplane-control"))
                .name(&self.name)
                .args(&self.args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .spawn();
            let cp = ControlPlane {
                process,
                api_addr: api,
                grpc_addr: grpc,
                http: http_client(),
                token: OnceCell::new(),
                config: ControlPlaneBuilder {
                    api_address: Some(api),
                    grpc_address: Some(grpc),
                    ..self.clone()
                },
            };
            if !wait {
                return cp;
            }
            match wait_http_ok(&cp.process, &cp.url("/readyz"), &cp.http).await {
                Ok(()) => return cp,
                Err(StartError::PortTaken) if attempt < attempts => {
                    eprintln!(
                        "[testkit] {}: a port was taken meanwhile; retrying with new ports",
                        self.name
                    );
                }
                Err(StartError::PortTaken) => {
                    panic!(
                        "{}: address in use; output:\n{}",
                        self.name,
                        cp.process.tail()
                    )
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// A running `streamplane-control`, killed when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    process: Process,
    api_addr: SocketAddr,
    grpc_addr: SocketAddr,
    http: reqwest::Client,
    token: OnceCell<String>,
    /// What it was started with, ports included, for [`ControlPlane::restart_builder`].
    config: ControlPlaneBuilder,
}

impl ControlPlane {
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// A control plane with every default: fresh database, free ports, random token and admin password; ready.
    pub async fn start() -> ControlPlane {
        Self::builder().start().await
    }

    /// A builder for the same database, ports, token, password, variables and arguments: stop this one
    /// ([`ControlPlane::process`]`.kill()` or `.terminate()`), then start the builder's control plane.
    pub fn restart_builder(&self) -> ControlPlaneBuilder {
        let mut builder = self.config.clone();
        // A generated password is printed only on the first start; carry it over so admin_password() still works.
        if builder.admin_password.is_none() {
            builder.admin_password = self.printed_admin_password();
        }
        builder
    }

    /// `http://127.0.0.1:PORT`, without a path: see [`ControlPlane::url`].
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// `api_url() + path`, e.g. `cp.url("/api/v1/paths")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api_addr)
    }

    /// `http://127.0.0.1:PORT`: what workers get as `STREAMPLANE_CONTROL_PLANE_URL`.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn database_url(&self) -> &str {
        self.config
            .database_url
            .as_deref()
            .expect("launch sets the database URL")
    }

    pub fn enrollment_token(&self) -> &str {
        &self.config.enrollment_token
    }

    /// The admin's password: the configured one, or the one the control plane printed on first start.
    pub fn admin_password(&self) -> String {
        if let Some(password) = &self.config.admin_password {
            return password.clone();
        }
        self.printed_admin_password().unwrap_or_else(|| {
            panic!(
                "no admin password configured and no 'initial admin credentials' line on stdout:\n{}",
                self.process.stdout()
            )
        })
    }

    /// The password in `initial admin credentials: username=admin password=XXXX` on stdout, if printed.
    fn printed_admin_password(&self) -> Option<String> {
        self.process
            .stdout()
            .lines()
            .find_map(|l| {
                l.split("initial admin credentials:")
                    .nth(1)
                    .map(str::to_string)
            })
            .and_then(|rest| {
                rest.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("password=").map(str::to_string))
            })
    }

    /// An HTTP client without proxies and with a request timeout.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Polls `GET /readyz` until it answers 200; panics when the process exits or after [`STARTUP_DEADLINE`].
    pub async fn wait_ready(&self) {
        if wait_http_ok(&self.process, &self.url("/readyz"), &self.http)
            .await
            .is_err()
        {
            panic!(
                "{}: address in use; output:\n{}",
                self.process.name(),
                self.process.tail()
            );
        }
    }

    /// Logs in through `POST /api/v1/auth/login` and returns the access token; panics on any failure.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let url = self.url("/api/v1/auth/login");
        let resp = self
            .http
            .post(&url)
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "login as {username}: HTTP {status}: {body}"
        );
        let value: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("login response {body:?}: {e}"));
        value["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("login response has no access_token: {body}"))
            .to_string()
    }

    /// A bearer token for `admin`, logged in once and cached.
    pub async fn admin_token(&self) -> String {
        self.token
            .get_or_init(|| async { self.login("admin", &self.admin_password()).await })
            .await
            .clone()
    }

    /// Starts a worker enrolled with this control plane, with defaults ([`WorkerBuilder`]); ready.
    pub async fn start_worker(&self) -> Worker {
        Worker::builder(self).start().await
    }
}

/// Starts a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    name: String,
    control_plane_url: Option<String>,
    enrollment_token: Option<String>,
    listen: Vec<String>,
    addresses: BTreeMap<String, SocketAddr>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl WorkerBuilder {
    /// A worker enrolled with the control plane at `control_plane_url` (its gRPC URL) with `enrollment_token`.
    pub fn new(control_plane_url: impl Into<String>, enrollment_token: impl Into<String>) -> Self {
        WorkerBuilder {
            control_plane_url: Some(control_plane_url.into()),
            enrollment_token: Some(enrollment_token.into()),
            ..Self::standalone()
        }
    }

    /// A worker without a control plane (standalone mode).
    pub fn standalone() -> Self {
        WorkerBuilder {
            name: unique_name("worker").replace('_', "-"),
            control_plane_url: None,
            enrollment_token: None,
            listen: WORKER_LISTEN_ENVS.iter().map(|s| s.to_string()).collect(),
            addresses: BTreeMap::new(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// The worker's name (default: unique), which is also the prefix of its echoed output.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Give the listen-address variable `env` a free `127.0.0.1` port ([`Worker::address`] tells which).
    pub fn listen(mut self, env: impl Into<String>) -> Self {
        let env = env.into();
        if !self.listen.contains(&env) {
            self.listen.push(env);
        }
        self
    }

    /// Set the listen-address variable `env` to `addr` (instead of a free port).
    pub fn address(mut self, env: impl Into<String>, addr: SocketAddr) -> Self {
        let env = env.into();
        self.listen.retain(|e| *e != env);
        self.addresses.insert(env, addr);
        self
    }

    /// An extra variable; it overrides the builder's own.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the worker and waits until `GET /healthz` on its metrics address answers 200.
    pub async fn start(self) -> Worker {
        self.launch(true).await
    }

    /// Starts the worker without waiting.
    pub async fn spawn(self) -> Worker {
        self.launch(false).await
    }

    async fn launch(self, wait: bool) -> Worker {
        let attempts = if self.listen.is_empty() {
            1
        } else {
            PORT_RACE_RETRIES
        };
        for attempt in 1..=attempts {
            let mut addresses = self.addresses.clone();
            for env in &self.listen {
                addresses.insert(env.clone(), loopback(free_port()));
            }
            let mut env: Vec<(String, String)> = Vec::new();
            if let Some(url) = &self.control_plane_url {
                env.push(("STREAMPLANE_CONTROL_PLANE_URL".into(), url.clone()));
            }
            if let Some(token) = &self.enrollment_token {
                env.push(("STREAMPLANE_ENROLLMENT_TOKEN".into(), token.clone()));
            }
            env.push(("STREAMPLANE_WORKER_NAME".into(), self.name.clone()));
            env.extend(addresses.iter().map(|(k, a)| (k.clone(), a.to_string())));
            env.extend(self.env.iter().cloned());
            for (k, v) in &env {
                if let Some(addr) = client_addr(v).filter(|_| k.ends_with("_ADDRESS")) {
                    addresses.insert(k.clone(), addr);
                }
            }
            let metrics_addr = *addresses
                .get("STREAMPLANE_METRICS_ADDRESS")
                .unwrap_or(&SocketAddr::from(([127, 0, 0, 1], 9998)));
            let process = Process::builder(bin("streamplane-worker"))
                .name(&self.name)
                .args(&self.args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .spawn();
            let worker = Worker {
                process,
                name: self.name.clone(),
                metrics_addr,
                http: http_client(),
                config: WorkerBuilder {
                    listen: Vec::new(),
                    addresses: addresses.clone(),
                    ..self.clone()
                },
                addresses,
            };
            if !wait {
                return worker;
            }
            match wait_http_ok(&worker.process, &worker.health_url(), &worker.http).await {
                Ok(()) => return worker,
                Err(StartError::PortTaken) if attempt < attempts => {
                    eprintln!(
                        "[testkit] {}: a port was taken meanwhile; retrying with new ports",
                        self.name
                    );
                }
                Err(StartError::PortTaken) => {
                    panic!(
                        "{}: address in use; output:\n{}",
                        self.name,
                        worker.process.tail()
                    )
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// A running `streamplane-worker`, killed when dropped.
#[derive(Debug)]
pub struct Worker {
    process: Process,
    name: String,
    metrics_addr: SocketAddr,
    addresses: BTreeMap<String, SocketAddr>,
    http: reqwest::Client,
    config: WorkerBuilder,
}

impl Worker {
    /// A builder for a worker enrolled with `cp`.
    pub fn builder(cp: &ControlPlane) -> WorkerBuilder {
        WorkerBuilder::new(cp.grpc_url(), cp.enrollment_token())
    }

    /// A builder for the same name, addresses, control plane, variables and arguments (stop this one first).
    pub fn restart_builder(&self) -> WorkerBuilder {
        self.config.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// `http://127.0.0.1:PORT/healthz`.
    pub fn health_url(&self) -> String {
        format!("http://{}/healthz", self.metrics_addr)
    }

    /// The address a client connects to for the listen-address variable `env` (e.g.
    /// `STREAMPLANE_RTSP_ADDRESS`); panics when the worker was not given one.
    pub fn address(&self, env: &str) -> SocketAddr {
        *self.addresses.get(env).unwrap_or_else(|| {
            panic!(
                "worker {} has no {env}; give it one with WorkerBuilder::listen({env:?})",
                self.name
            )
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Polls `GET /healthz` until it answers 200; panics when the process exits or after [`STARTUP_DEADLINE`].
    pub async fn wait_ready(&self) {
        if wait_http_ok(&self.process, &self.health_url(), &self.http)
            .await
            .is_err()
        {
            panic!(
                "{}: address in use; output:\n{}",
                self.name,
                self.process.tail()
            );
        }
    }

    /// The `/healthz` body.
    pub async fn health(&self) -> Value {
        let url = self.health_url();
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
    }

    /// Waits until `/healthz` reports `"control_plane_connected": true`.
    pub async fn wait_connected(&self, deadline: Duration) {
        crate::eventually(
            deadline,
            &format!("worker {} to connect to the control plane", self.name),
            || async {
                let body: Value = self
                    .http
                    .get(self.health_url())
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (body["control_plane_connected"] == Value::Bool(true)).then_some(())
            },
        )
        .await;
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = self.metrics_url();
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            resp.status().is_success(),
            "GET {url}: HTTP {}",
            resp.status()
        );
        resp.text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses() {
        assert_eq!(client_addr("127.0.0.1:9997"), Some(loopback(9997)));
        assert_eq!(client_addr(":9997"), Some(loopback(9997)));
        assert_eq!(client_addr("0.0.0.0:8554"), Some(loopback(8554)));
        assert_eq!(client_addr("192.0.2.1:1"), "192.0.2.1:1".parse().ok());
        assert_eq!(client_addr("nonsense"), None);
    }
}
