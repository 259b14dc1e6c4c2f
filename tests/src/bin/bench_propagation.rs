//! Measures REST write → desired state delivered to N connected workers.
//!
//! Connects N gRPC watchers to a running control plane (each registers as a worker), then makes
//! sequential `POST /api/v1/paths` calls and records, per write, when each watcher received the
//! first snapshot containing the new path. Prints p50/p90/p99/max per worker and for "all N".
//!
//! Usage: streamplane-bench-propagation --api http://127.0.0.1:9997 --grpc http://127.0.0.1:50051 \
//!        --enrollment-token T --admin-password P [--workers 10] [--writes 200]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use streamplane_proto::v1 as pb;
use streamplane_proto::v1::worker_control_client::WorkerControlClient;
use tonic::Request;

struct Args {
    api: String,
    grpc: String,
    token: String,
    password: String,
    workers: usize,
    writes: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        api: String::new(),
        grpc: String::new(),
        token: String::new(),
        password: String::new(),
        workers: 10,
        writes: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--api" => args.api = value()?,
            "--grpc" => args.grpc = value()?,
            "--enrollment-token" => args.token = value()?,
            "--admin-password" => args.password = value()?,
            "--workers" => args.workers = value()?.parse()?,
            "--writes" => args.writes = value()?.parse()?,
            other => bail!("unknown argument {other}; see the file's doc comment"),
        }
    }
    if args.api.is_empty()
        || args.grpc.is_empty()
        || args.token.is_empty()
        || args.password.is_empty()
    {
        bail!("--api, --grpc, --enrollment-token and --admin-password are required");
    }
    Ok(args)
}

fn with_token<T>(msg: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

/// path name → per-watcher arrival times.
type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

async fn watcher(
    grpc: String,
    token: String,
    index: usize,
    arrivals: Arrivals,
) -> anyhow::Result<()> {
    let mut client = WorkerControlClient::connect(grpc).await?;
    let reg = client
        .register(with_token(
            pb::RegisterRequest {
                name: format!("bench-{index}"),
                version: "bench".into(),
                ..Default::default()
            },
            &token,
        )?)
        .await?
        .into_inner();
    let mut stream = client
        .watch_desired_state(with_token(
            pb::WatchDesiredStateRequest {
                worker_id: reg.worker_id,
                known_generation: 0,
            },
            &token,
        )?)
        .await?
        .into_inner();
    let mut seen = std::collections::HashSet::new();
    while let Some(state) = stream.message().await? {
        let now = Instant::now();
        let mut a = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for p in state.paths {
            if seen.insert(p.name.clone()) {
                a.entry(p.name).or_default().push(now);
            }
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(label: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{label}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.9).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", args.api))
        .json(&json!({"username": "admin", "password": args.password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .context("no access_token")?
        .to_string();

    let arrivals: Arrivals = Arc::default();
    for i in 0..args.workers {
        let (g, t, a) = (args.grpc.clone(), args.token.clone(), arrivals.clone());
        tokio::spawn(async move {
            if let Err(e) = watcher(g, t, i, a).await {
                eprintln!("watcher {i}: {e:#}");
            }
        });
    }
    // Every watcher has its first snapshot before measuring.
    let ready_deadline = Instant::now() + Duration::from_secs(30);
    let probe = format!("bench-ready-{}", std::process::id());
    http.post(format!("{}/api/v1/paths", args.api))
        .bearer_auth(&token)
        .json(&json!({"name": probe}))
        .send()
        .await?
        .error_for_status()?;
    loop {
        let n = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .get(&probe)
            .map_or(0, Vec::len);
        if n == args.workers {
            break;
        }
        if Instant::now() > ready_deadline {
            bail!(
                "only {n} of {} watchers got a snapshot within 30 s",
                args.workers
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut per_worker = Vec::new();
    let mut all = Vec::new();
    for i in 0..args.writes {
        let name = format!("bench-{}-{i}", std::process::id());
        let t0 = Instant::now();
        http.post(format!("{}/api/v1/paths", args.api))
            .bearer_auth(&token)
            .json(&json!({"name": name}))
            .send()
            .await?
            .error_for_status()?;
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let times = arrivals
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .get(&name)
                .cloned()
                .unwrap_or_default();
            if times.len() == args.workers {
                per_worker.extend(times.iter().map(|t| t.duration_since(t0)));
                all.push(
                    times
                        .iter()
                        .max()
                        .map_or(Duration::ZERO, |t| t.duration_since(t0)),
                );
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "write {i}: only {} of {} watchers received it within 10 s",
                    times.len(),
                    args.workers
                );
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    println!(
        "REST write (POST /api/v1/paths, measured from request start) -> snapshot received over gRPC"
    );
    summary(
        &format!(
            "  per worker ({} workers x {} writes)",
            args.workers, args.writes
        ),
        per_worker,
    );
    summary(&format!("  all {} workers have it", args.workers), all);
    Ok(())
}
