//! The worker, in process, against a scripted fake control plane: the test decides which
//! snapshots the fake sends, when it goes away and whether it accepts the enrollment token.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use streamplane_proto::v1 as pb;
use streamplane_proto::v1::worker_control_server::{WorkerControl, WorkerControlServer};
use streamplane_testkit::eventually;
use streamplane_worker::{AppliedState, Worker, config};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "enroll-me";
const DEADLINE: Duration = Duration::from_secs(15);

/// Log lines of the current test. `#[tokio::test]` runs every task on the test's thread, so a
/// thread-local subscriber sees the worker's logs and no other test's.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug,h2=info,hyper=info,tower=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The fake control plane
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Script {
    /// The snapshot a new watcher gets first.
    current: Mutex<Option<pb::DesiredState>>,
    registrations: Mutex<Vec<pb::RegisterRequest>>,
    reports: Mutex<Vec<pb::WorkerReport>>,
    refused: Mutex<usize>,
}

#[derive(Clone)]
struct FakeControlPlane {
    script: Arc<Script>,
    live: broadcast::Sender<pb::DesiredState>,
    /// Ends every stream and the server: the control plane "goes away".
    stop: CancellationToken,
}

struct RunningFake {
    fake: FakeControlPlane,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl FakeControlPlane {
    /// Starts on `addr` (port 0 for any) with `initial` as the current snapshot.
    async fn start(addr: SocketAddr, initial: Option<pb::DesiredState>) -> RunningFake {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeControlPlane {
            script: Arc::new(Script {
                current: Mutex::new(initial),
                ..Script::default()
            }),
            live: broadcast::channel(16).0,
            stop: CancellationToken::new(),
        };
        let service = WorkerControlServer::new(fake.clone());
        let stop = fake.stop.clone();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        RunningFake { fake, addr, server }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if header == Some(&format!("Bearer {TOKEN}")) {
            return Ok(());
        }
        *self.script.refused.lock().unwrap() += 1;
        Err(Status::unauthenticated("unknown enrollment token"))
    }
}

type SnapshotStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::DesiredState, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerControl for FakeControlPlane {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let worker_id = format!("worker-of-{}", request.name);
        self.script.registrations.lock().unwrap().push(request);
        Ok(Response::new(pb::RegisterResponse {
            worker_id,
            heartbeat_interval_ms: 100,
        }))
    }

    type WatchDesiredStateStream = SnapshotStream;

    async fn watch_desired_state(
        &self,
        request: Request<pb::WatchDesiredStateRequest>,
    ) -> Result<Response<Self::WatchDesiredStateStream>, Status> {
        self.authorize(&request)?;
        // Subscribe before reading `current`, so that nothing sent in between is lost.
        let mut live = self.live.subscribe();
        let current = self.script.current.lock().unwrap().clone();
        let (tx, rx) = mpsc::channel(16);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            if let Some(snapshot) = current {
                sent = snapshot.generation;
                if tx.send(Ok(snapshot)).await.is_err() {
                    return;
                }
            }
            loop {
                let snapshot = tokio::select! {
                    () = stop.cancelled() => return,
                    snapshot = live.recv() => match snapshot {
                        Ok(s) => s,
                        Err(_) => return,
                    },
                };
                // A real control plane does not resend what the watcher got first.
                if snapshot.generation == sent {
                    continue;
                }
                if tx.send(Ok(snapshot)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report(
        &self,
        request: Request<Streaming<pb::WorkerReport>>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        self.authorize(&request)?;
        let mut reports = request.into_inner();
        loop {
            let report = tokio::select! {
                () = self.stop.cancelled() => break,
                report = reports.message() => report?,
            };
            match report {
                Some(report) => self.script.reports.lock().unwrap().push(report),
                None => break,
            }
        }
        Ok(Response::new(pb::ReportAck {}))
    }
}

impl RunningFake {
    /// Makes `snapshot` current and sends it to every watcher.
    fn send(&self, snapshot: pb::DesiredState) {
        *self.fake.script.current.lock().unwrap() = Some(snapshot.clone());
        // No receiver is fine: the next watcher gets it as `current`.
        let _ = self.fake.live.send(snapshot);
    }

    fn watchers(&self) -> usize {
        self.fake.live.receiver_count()
    }

    fn registrations(&self) -> Vec<pb::RegisterRequest> {
        self.fake.script.registrations.lock().unwrap().clone()
    }

    fn refused(&self) -> usize {
        *self.fake.script.refused.lock().unwrap()
    }

    /// The first report matching `filter`, once one arrives.
    async fn report_where(
        &self,
        what: &str,
        filter: impl Fn(&pb::WorkerReport) -> bool,
    ) -> pb::WorkerReport {
        eventually(DEADLINE, what, || async {
            let reports = self.fake.script.reports.lock().unwrap();
            reports.iter().find(|r| filter(r)).cloned()
        })
        .await
    }

    /// Ends every stream, stops accepting and waits until the port is free.
    async fn stop(self) -> SocketAddr {
        self.fake.stop.cancel();
        tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("the fake control plane stops")
            .unwrap();
        self.addr
    }
}

// ---------------------------------------------------------------------------------------------
// The worker under test
// ---------------------------------------------------------------------------------------------

struct RunningWorker {
    http: SocketAddr,
    applied: watch::Receiver<Arc<AppliedState>>,
    client: reqwest::Client,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), streamplane_worker::RunError>>,
}

async fn start_worker(env: &[(&str, &str)]) -> RunningWorker {
    // Shown only when a test fails (unless it captures its own logs with `Logs`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug,h2=info,hyper=info,tower=info")
        .with_test_writer()
        .try_init();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = config::load(None, env, Some("test-worker".into()))
        .unwrap()
        .config;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let worker = Worker::new(config);
    let applied = worker.desired_state();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(worker.run(listener, cancel.clone()));
    RunningWorker {
        http,
        applied,
        client: reqwest::Client::new(),
        cancel,
        task,
    }
}

async fn managed_worker(control_plane: SocketAddr, token: &str) -> RunningWorker {
    let url = format!("http://{control_plane}");
    start_worker(&[
        ("STREAMPLANE_CONTROL_PLANE_URL", &url),
        ("STREAMPLANE_ENROLLMENT_TOKEN", token),
        ("STREAMPLANE_RECONNECT_BACKOFF_MAX", "200ms"),
        ("STREAMPLANE_LABELS", "zone=a"),
        ("STREAMPLANE_ADVERTISED_ADDRESSES", "rtsp://127.0.0.1:8554"),
    ])
    .await
}

impl RunningWorker {
    async fn health(&self) -> Value {
        let url = format!("http://{}/healthz", self.http);
        let response = self.client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn metric(&self, series: &str) -> f64 {
        let url = format!("http://{}/metrics", self.http);
        let text = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .unwrap()
    }

    async fn wait_for_generation(&self, generation: u64) {
        eventually(
            DEADLINE,
            &format!("/healthz generation {generation}"),
            || async { self.health().await["generation"] == generation },
        )
        .await;
    }

    async fn wait_for_connected(&self, connected: bool) {
        eventually(
            DEADLINE,
            &format!("control_plane_connected {connected}"),
            || async {
                let health = self.health().await["control_plane_connected"] == connected;
                let metric = self
                    .metric("streamplane_worker_control_plane_connected")
                    .await
                    == f64::from(u8::from(connected));
                health && metric
            },
        )
        .await;
    }

    async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the worker stops when cancelled")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}

fn snapshot(generation: u64, paths: &[&str]) -> pb::DesiredState {
    pb::DesiredState {
        generation,
        paths: paths
            .iter()
            .map(|name| pb::PathConfig {
                id: format!("id-{name}"),
                name: name.to_string(),
                source_kind: pb::SourceKind::Publisher.into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// (a) register, apply generation 5, report it; (b) a stale 3 is ignored, a newer 7 applied.
#[tokio::test]
async fn applies_newer_snapshots_ignores_stale_ones_and_reports() {
    let cp = FakeControlPlane::start(any_addr(), Some(snapshot(5, &["cam1", "~^live/"]))).await;
    let worker = managed_worker(cp.addr, TOKEN).await;

    worker.wait_for_generation(5).await;
    worker.wait_for_connected(true).await;
    let report = cp
        .report_where("a report of generation 5", |r| r.applied_generation == 5)
        .await;
    assert_eq!(report.worker_id, "worker-of-test-worker");
    assert_eq!(report.apply_error, "");
    assert!(report.sent_at.is_some() && report.totals.is_some());
    let registration = cp.registrations()[0].clone();
    assert_eq!(registration.name, "test-worker");
    assert_eq!(registration.capabilities, ["rtsp"]);
    assert_eq!(registration.version, streamplane_worker::VERSION);
    assert_eq!(registration.advertised_addresses, ["rtsp://127.0.0.1:8554"]);
    assert_eq!(
        registration.labels.get("zone").map(String::as_str),
        Some("a")
    );
    {
        // The media layer sees the converted state through the watch channel.
        let applied = worker.applied.borrow();
        assert_eq!(applied.generation(), 5);
        assert!(applied.applied_at.is_some());
        assert!(
            applied
                .desired
                .paths
                .find(&"live/x".parse().unwrap())
                .is_some()
        );
    }
    assert_eq!(worker.metric("streamplane_worker_paths").await, 2.0);
    assert_eq!(
        worker
            .metric("streamplane_worker_snapshots_applied_total")
            .await,
        1.0
    );

    cp.send(snapshot(3, &["old"]));
    eventually(DEADLINE, "the stale snapshot to be counted", || async {
        let stale = worker
            .metric("streamplane_worker_snapshots_ignored_total{reason=\"stale\"}")
            .await;
        stale == 1.0
    })
    .await;
    assert_eq!(worker.health().await["generation"], 5);
    assert_eq!(
        worker
            .metric("streamplane_worker_desired_state_generation")
            .await,
        5.0
    );

    cp.send(snapshot(7, &["cam1"]));
    worker.wait_for_generation(7).await;
    cp.report_where("a report of generation 7", |r| r.applied_generation == 7)
        .await;
    assert_eq!(worker.metric("streamplane_worker_paths").await, 1.0);
    assert_eq!(
        worker
            .metric("streamplane_worker_snapshots_applied_total")
            .await,
        2.0
    );

    worker.stop().await;
    cp.stop().await;
}

/// (c) the control plane goes away: the worker keeps generation 7, then converges to 9 when a
/// control plane comes back on the same address.
#[tokio::test]
async fn keeps_the_last_good_state_while_the_control_plane_is_away() {
    let cp = FakeControlPlane::start(any_addr(), Some(snapshot(7, &["cam1"]))).await;
    let worker = managed_worker(cp.addr, TOKEN).await;
    worker.wait_for_generation(7).await;
    worker.wait_for_connected(true).await;
    let reconnects_before = worker.metric("streamplane_worker_reconnects_total").await;

    let addr = cp.stop().await;
    worker.wait_for_connected(false).await;
    let health = worker.health().await;
    assert_eq!(health["generation"], 7, "{health}");
    assert_eq!(health["mode"], "managed");
    assert_eq!(worker.applied.borrow().generation(), 7);
    eventually(DEADLINE, "reconnection attempts", || async {
        let reconnects = worker.metric("streamplane_worker_reconnects_total").await;
        reconnects > reconnects_before
    })
    .await;
    assert_eq!(worker.health().await["generation"], 7);

    let cp = FakeControlPlane::start(addr, Some(snapshot(9, &["cam1", "cam2"]))).await;
    worker.wait_for_generation(9).await;
    worker.wait_for_connected(true).await;
    assert_eq!(cp.registrations().len(), 1, "the worker registers again");
    cp.report_where("a report of generation 9", |r| r.applied_generation == 9)
        .await;
    assert_eq!(worker.metric("streamplane_worker_paths").await, 2.0);

    worker.stop().await;
    cp.stop().await;
}

/// (d) a refused enrollment token: nothing is applied and the worker keeps retrying.
#[tokio::test]
async fn a_refused_token_applies_nothing_and_keeps_retrying() {
    let (logs, _guard) = Logs::capture();
    let cp = FakeControlPlane::start(any_addr(), Some(snapshot(5, &["cam1"]))).await;
    let worker = managed_worker(cp.addr, "not-the-token").await;

    eventually(DEADLINE, "two refused registrations", || async {
        cp.refused() >= 2
    })
    .await;
    eventually(DEADLINE, "a reconnect to be counted", || async {
        let reconnects = worker.metric("streamplane_worker_reconnects_total").await;
        reconnects >= 1.0
    })
    .await;
    let health = worker.health().await;
    assert_eq!(health["generation"], 0, "{health}");
    assert_eq!(health["control_plane_connected"], false, "{health}");
    assert_eq!(
        worker
            .metric("streamplane_worker_control_plane_connected")
            .await,
        0.0
    );
    assert!(cp.registrations().is_empty());
    assert!(worker.applied.borrow().desired.paths.is_empty());
    let logs = logs.text();
    assert!(
        logs.contains("the control plane refused the enrollment token; check enrollmentToken"),
        "{logs}"
    );
    assert!(
        !logs.contains("not-the-token"),
        "the token leaked into the logs:\n{logs}"
    );

    worker.stop().await;
    cp.stop().await;
}

/// (e) an invalid snapshot is not applied, and the next report says why.
#[tokio::test]
async fn an_invalid_snapshot_is_refused_and_reported() {
    let cp = FakeControlPlane::start(any_addr(), Some(snapshot(5, &["cam1"]))).await;
    let worker = managed_worker(cp.addr, TOKEN).await;
    worker.wait_for_generation(5).await;
    eventually(DEADLINE, "the worker to watch", || async {
        cp.watchers() > 0
    })
    .await;

    cp.send(snapshot(6, &["cam1", "~("]));
    let report = cp
        .report_where("a report with apply_error", |r| !r.apply_error.is_empty())
        .await;
    assert_eq!(report.applied_generation, 5);
    assert!(
        report.apply_error.contains("generation 6")
            && report.apply_error.contains("invalid regular expression"),
        "{}",
        report.apply_error
    );
    assert_eq!(
        worker
            .metric("streamplane_worker_snapshots_ignored_total{reason=\"invalid\"}")
            .await,
        1.0
    );
    assert_eq!(worker.health().await["generation"], 5);
    assert_eq!(worker.applied.borrow().desired.paths.len(), 1);

    // A newer valid snapshot heals it.
    cp.send(snapshot(8, &["cam1", "cam2"]));
    worker.wait_for_generation(8).await;
    cp.report_where("a clean report of generation 8", |r| {
        r.applied_generation == 8 && r.apply_error.is_empty()
    })
    .await;

    worker.stop().await;
    cp.stop().await;
}

#[tokio::test]
async fn standalone_mode_serves_the_default_state() {
    let worker = start_worker(&[]).await;
    let health = worker.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mode"], "standalone");
    assert_eq!(health["generation"], 0);
    assert_eq!(health["control_plane_connected"], false);
    assert_eq!(worker.metric("streamplane_worker_paths").await, 1.0);
    let url = format!("http://{}/metrics", worker.http);
    let text = worker
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(
            "streamplane_worker_info{{version=\"{}\",name=\"test-worker\"}} 1",
            streamplane_worker::VERSION
        )),
        "{text}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_busy_metrics_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = streamplane_worker::bind_metrics(addr).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on {addr} (metricsAddress): address already in use; \
             set metricsAddress or STREAMPLANE_METRICS_ADDRESS to a free port"
        )
    );
}
