//! Helpers for the control plane's integration tests: a scripted worker speaking raw gRPC with a
//! chosen enrollment token ([`Agent`]), a desired-state stream read in the background with arrival
//! times ([`Watch`]), an open report stream ([`Reports`]) and REST calls as the admin.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamplane_proto::v1 as pb;
use streamplane_proto::v1::worker_control_client::WorkerControlClient;
use streamplane_testkit::{ControlPlane, ControlPlaneBuilder, eventually};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// For anything that should happen "soon" (a snapshot, a status change), on a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// The promise to operators: a change made over REST reaches every watching worker within this.
pub const PROPAGATION_BUDGET: Duration = Duration::from_secs(1);
/// How long a stream must stay quiet to count as "sends nothing".
pub const SILENCE: Duration = Duration::from_millis(700);
pub const HEARTBEAT_INTERVAL_MS: u32 = 200;
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// 2026-01-01T00:00:00Z, the `sent_at` of every report these tests send.
pub const SENT_AT_SECONDS: i64 = 1_767_225_600;

/// A control plane with short heartbeats, so that the reaper acts within a test's patience.
pub fn control_plane() -> ControlPlaneBuilder {
    control_plane_with_heartbeat_timeout("1s")
}

/// For tests where the reaper must not be the reason a worker goes offline.
pub fn control_plane_with_heartbeat_timeout(timeout: &str) -> ControlPlaneBuilder {
    ControlPlane::builder()
        .env(
            "STREAMPLANE_HEARTBEAT_INTERVAL",
            format!("{HEARTBEAT_INTERVAL_MS}ms"),
        )
        .env("STREAMPLANE_HEARTBEAT_TIMEOUT", timeout)
}

// ---------------------------------------------------------------------------------------------
// A scripted worker: raw gRPC calls with a chosen enrollment token
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct Agent {
    pub client: WorkerControlClient<Channel>,
    /// The `authorization` metadata value; `None` sends none.
    pub authorization: Option<String>,
}

impl Agent {
    /// Connected to `cp` with its enrollment token.
    pub async fn connect(cp: &ControlPlane) -> Agent {
        Agent::with_authorization(cp, Some(format!("Bearer {}", cp.enrollment_token()))).await
    }

    pub async fn with_authorization(cp: &ControlPlane, authorization: Option<String>) -> Agent {
        Agent::connect_url(cp.grpc_url(), authorization).await
    }

    /// Connected to `url` (e.g. a [`CuttableProxy`] in front of the control plane).
    pub async fn connect_url(url: String, authorization: Option<String>) -> Agent {
        let client = WorkerControlClient::connect(url.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the gRPC service at {url}: {e}"));
        Agent {
            client,
            authorization,
        }
    }

    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        if let Some(value) = &self.authorization {
            req.metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        req
    }

    pub async fn try_register(&mut self, name: &str) -> Result<pb::RegisterResponse, Status> {
        let req = self.request(pb::RegisterRequest {
            name: name.to_string(),
            advertised_addresses: vec!["rtsp://127.0.0.1:8554".into()],
            capabilities: vec!["rtsp".into()],
            version: "0.0.0-test".into(),
            labels: [("zone".to_string(), "test".to_string())].into(),
        });
        self.client
            .register(req)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Registers `name` and returns its worker id.
    pub async fn register(&mut self, name: &str) -> String {
        let resp = self
            .try_register(name)
            .await
            .unwrap_or_else(|s| panic!("Register {name:?}: {s:?}"));
        resp.worker_id
    }

    pub async fn try_watch(
        &mut self,
        worker_id: &str,
        known_generation: u64,
    ) -> Result<Watch, Status> {
        let req = self.request(pb::WatchDesiredStateRequest {
            worker_id: worker_id.to_string(),
            known_generation,
        });
        let stream = self.client.watch_desired_state(req).await?.into_inner();
        Ok(Watch::follow(stream))
    }

    pub async fn watch(&mut self, worker_id: &str, known_generation: u64) -> Watch {
        self.try_watch(worker_id, known_generation)
            .await
            .unwrap_or_else(|s| panic!("WatchDesiredState({worker_id}, {known_generation}): {s:?}"))
    }

    /// A report stream of exactly `reports`, then the end of the stream.
    pub async fn report_all(
        &mut self,
        reports: Vec<pb::WorkerReport>,
    ) -> Result<pb::ReportAck, Status> {
        let req = self.request(tokio_stream::iter(reports));
        self.client
            .report(req)
            .await
            .map(tonic::Response::into_inner)
    }

    /// A report stream that stays open until [`Reports::close`].
    pub fn open_reports(&self) -> Reports {
        let (tx, rx) = mpsc::channel(16);
        let req = self.request(ReceiverStream::new(rx));
        let mut client = self.client.clone();
        let call =
            tokio::spawn(async move { client.report(req).await.map(tonic::Response::into_inner) });
        Reports { tx: Some(tx), call }
    }
}

/// A TCP proxy in front of the control plane's gRPC port whose connections the test can cut, as
/// when a worker's process dies or its network fails: closed sockets, no HTTP/2 goodbye.
pub struct CuttableProxy {
    addr: SocketAddr,
    cut: CancellationToken,
    task: JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = CancellationToken::new();
        let stop = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut inbound = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => return,
                    },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    // Either side closing, or a cut, drops both sockets.
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        CuttableProxy { addr, cut, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut.cancel();
        self.task.abort();
    }
}

pub struct Reports {
    tx: Option<mpsc::Sender<pb::WorkerReport>>,
    call: JoinHandle<Result<pb::ReportAck, Status>>,
}

impl Reports {
    pub async fn send(&self, report: pb::WorkerReport) {
        let tx = self.tx.as_ref().expect("the stream is open until close");
        tx.send(report).await.expect("the Report call ended early");
    }

    /// Ends the stream and returns the control plane's answer.
    pub async fn close(mut self) -> Result<pb::ReportAck, Status> {
        drop(self.tx.take());
        tokio::time::timeout(DEADLINE, &mut self.call)
            .await
            .expect("the Report call answers once its stream ends")
            .expect("the Report task does not panic")
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        self.call.abort();
    }
}

pub enum Event {
    Snapshot(Instant, Box<pb::DesiredState>),
    Ended(Result<(), Status>),
}

/// A desired-state stream read by a task of its own, so that each snapshot is stamped with the
/// moment it arrived, even while the test waits on something else.
pub struct Watch {
    rx: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
    last_generation: Option<u64>,
}

impl Watch {
    pub fn follow(mut stream: tonic::Streaming<pb::DesiredState>) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = match stream.message().await {
                    Ok(Some(s)) => Event::Snapshot(Instant::now(), Box::new(s)),
                    Ok(None) => Event::Ended(Ok(())),
                    Err(status) => Event::Ended(Err(status)),
                };
                let end = matches!(event, Event::Ended(_));
                if tx.send(event).is_err() || end {
                    return;
                }
            }
        });
        Watch {
            rx,
            task,
            last_generation: None,
        }
    }

    /// The next snapshot and when it arrived. Panics when the stream ends, nothing comes within
    /// [`DEADLINE`], or the generation does not grow.
    pub async fn next(&mut self) -> (Instant, pb::DesiredState) {
        let event = tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no snapshot within {DEADLINE:?} (last generation {:?})",
                    self.last_generation
                )
            });
        match event {
            Some(Event::Snapshot(at, s)) => {
                if let Some(last) = self.last_generation {
                    assert!(
                        s.generation > last,
                        "a stream sent generation {} after {last}: generations must only grow",
                        s.generation
                    );
                }
                self.last_generation = Some(s.generation);
                (at, *s)
            }
            Some(Event::Ended(outcome)) => panic!("the desired-state stream ended: {outcome:?}"),
            None => panic!("the desired-state reader stopped"),
        }
    }

    /// Skips snapshots until one satisfies `pred` (later changes may be coalesced into one).
    pub async fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&pb::DesiredState) -> bool,
    ) -> (Instant, pb::DesiredState) {
        let until = Instant::now() + DEADLINE;
        loop {
            let remaining = until.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(remaining, self.next()).await;
            let (at, s) = next.unwrap_or_else(|_| {
                panic!(
                    "no snapshot with {what} within {DEADLINE:?} (last {:?})",
                    self.last_generation
                )
            });
            if pred(&s) {
                return (at, s);
            }
        }
    }

    /// Asserts that nothing arrives for [`SILENCE`].
    pub async fn assert_silent(&mut self, why: &str) {
        match tokio::time::timeout(SILENCE, self.rx.recv()).await {
            Err(_) => {}
            Ok(Some(Event::Snapshot(_, s))) => {
                panic!("{why}, yet generation {} arrived: {s:?}", s.generation)
            }
            Ok(Some(Event::Ended(outcome))) => panic!("{why}, yet the stream ended: {outcome:?}"),
            Ok(None) => panic!("the desired-state reader stopped"),
        }
    }

    /// Waits for the end of the stream (skipping snapshots) and returns how it ended.
    pub async fn ended(&mut self) -> Result<(), Status> {
        let wait = async {
            loop {
                match self.rx.recv().await {
                    Some(Event::Snapshot(..)) => {}
                    Some(Event::Ended(outcome)) => return outcome,
                    None => panic!("the desired-state reader stopped"),
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("the stream ends within the deadline")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// REST and snapshot helpers
// ---------------------------------------------------------------------------------------------

/// A REST call as the admin; returns the status and the JSON body (`Null` when empty).
pub async fn api(
    cp: &ControlPlane,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let token = cp.admin_token().await;
    let url = cp.url(path);
    let mut req = cp.http().request(method.clone(), &url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// A REST call that must succeed with `expected`.
pub async fn api_expect(
    cp: &ControlPlane,
    method: Method,
    path: &str,
    body: Option<Value>,
    expected: StatusCode,
) -> Value {
    let (status, value) = api(cp, method.clone(), path, body).await;
    assert_eq!(status, expected, "{method} {path}: {value}");
    value
}

/// The worker as `GET /api/v1/workers` lists it.
pub async fn listed_worker(cp: &ControlPlane, id: &str) -> Option<Value> {
    let list = api_expect(cp, Method::GET, "/api/v1/workers", None, StatusCode::OK).await;
    list["items"]
        .as_array()?
        .iter()
        .find(|w| w["id"] == id)
        .cloned()
}

/// Waits until the listed worker satisfies `pred`, and returns it.
pub async fn wait_worker(
    cp: &ControlPlane,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    eventually(DEADLINE, &format!("worker {id} {what}"), || async {
        match listed_worker(cp, id).await {
            Some(w) if pred(&w) => Ok(w),
            Some(w) => Err(format!("listed as {w}")),
            None => Err("not listed".to_string()),
        }
    })
    .await
}

/// `POST /api/v1/auth/login`, whatever the outcome.
pub async fn login(cp: &ControlPlane, username: &str, password: &str) -> (StatusCode, Value) {
    let url = cp.url("/api/v1/auth/login");
    let body = json!({ "username": username, "password": password });
    let resp = cp
        .http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The path named `name` in a snapshot.
pub fn path<'a>(s: &'a pb::DesiredState, name: &str) -> Option<&'a pb::PathConfig> {
    s.paths.iter().find(|p| p.name == name)
}

/// A report from a worker running `applied_generation`: one ready path `cam` with one RTSP publisher.
pub fn report(worker_id: &str, applied_generation: u64, apply_error: &str) -> pb::WorkerReport {
    let counters = pb::Counters {
        bytes_received: 1000,
        packets_received: 10,
        ..Default::default()
    };
    pb::WorkerReport {
        worker_id: worker_id.to_string(),
        applied_generation,
        sent_at: Some(prost_types::Timestamp {
            seconds: SENT_AT_SECONDS,
            nanos: 0,
        }),
        paths: vec![pb::PathStatus {
            name: "cam".into(),
            ready: true,
            sessions: vec![pb::MediaSession {
                id: "session-1".into(),
                role: pb::SessionRole::Publisher as i32,
                protocol: "rtsp".into(),
                remote_address: "192.0.2.7:50000".into(),
                transport: "udp".into(),
                counters: Some(counters),
                ..Default::default()
            }],
            counters: Some(counters),
        }],
        totals: Some(pb::Counters {
            bytes_sent: 2000,
            ..counters
        }),
        apply_error: apply_error.to_string(),
    }
}

pub fn assert_code(
    outcome: Result<impl std::fmt::Debug, Status>,
    code: Code,
    mention: &str,
    call: &str,
) {
    match outcome {
        Ok(v) => panic!("{call}: expected {code:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{call}: {s:?}");
            assert!(
                s.message().contains(mention),
                "{call}: message {:?} should mention {mention:?}",
                s.message()
            );
        }
    }
}
