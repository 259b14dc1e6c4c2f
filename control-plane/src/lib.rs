//! Streamplane control plane: stores paths, users and ACL rules in Postgres, serves the REST API
//! and JWTs, and streams the desired state to workers over gRPC.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod hub;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiSettings, AppState};
use crate::auth::{KeyRing, TokenError};
use crate::config::Config;
use crate::grpc::{WorkerControlServer, WorkerControlService};
use crate::hub::SnapshotHub;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({key}): {source}; set {key} or {env} to a free address")]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        env: &'static str,
        source: std::io::Error,
    },
    #[error(
        "database: {0}; check databaseUrl (STREAMPLANE_DATABASE_URL) and that Postgres is running"
    )]
    Database(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] TokenError),
    #[error("cannot hash the admin password: {0}")]
    Password(String),
    #[error("{0}")]
    Server(String),
}

/// Binds a TCP listener, naming the option that changes the address when it fails.
pub fn bind(
    addr: SocketAddr,
    key: &'static str,
    env: &'static str,
) -> Result<std::net::TcpListener, StartError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind {
        addr,
        key,
        env,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            addr,
            key,
            env,
            source,
        })?;
    Ok(listener)
}

pub struct Listeners {
    pub api: std::net::TcpListener,
    pub grpc: std::net::TcpListener,
}

impl Listeners {
    pub fn bind(config: &Config) -> Result<Self, StartError> {
        Ok(Listeners {
            api: bind(config.api_address, "apiAddress", "STREAMPLANE_API_ADDRESS")?,
            grpc: bind(
                config.grpc_address,
                "grpcAddress",
                "STREAMPLANE_GRPC_ADDRESS",
            )?,
        })
    }
}

/// What start-up did that the operator must hear about.
#[derive(Debug)]
pub struct Bootstrap {
    /// (username, password) of a first admin created with a generated password.
    pub generated_admin: Option<(String, String)>,
    pub created_admin: bool,
}

/// Connects (waiting up to `wait` for Postgres), migrates and applies migrations.
pub async fn connect_and_migrate(config: &Config, wait: Duration) -> Result<Store, StartError> {
    let store = Store::connect_lazy(config.database_url.expose())?;
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(200);
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(store),
            Err(StoreError::Unavailable(e)) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "postgres not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates the first admin (and MediaMTX-like defaults) on an empty database.
pub async fn bootstrap(store: &Store, config: &Config) -> Result<Bootstrap, StartError> {
    if store.count_users().await? > 0 {
        return Ok(Bootstrap {
            generated_admin: None,
            created_admin: false,
        });
    }
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.expose().to_string(), false),
        None => (random_password(), true),
    };
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&to_hash))
        .await
        .map_err(|e| StartError::Password(e.to_string()))?
        .map_err(|e| StartError::Password(e.to_string()))?;
    let created = store.bootstrap_admin(&config.admin_username, &hash).await?;
    Ok(Bootstrap {
        generated_admin: (created && generated).then(|| (config.admin_username.clone(), password)),
        created_admin: created,
    })
}

fn random_password() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

/// Runs the REST API, the gRPC service and the background loops until `cancel` fires.
pub async fn serve(
    config: Config,
    store: Store,
    listeners: Listeners,
    cancel: CancellationToken,
) -> Result<(), StartError> {
    let fresh = auth::generate_signing_key()?;
    let key = store.ensure_signing_key(|| fresh).await?;
    tracing::debug!(kid = %key.kid, "signing key ready");
    let keys = Arc::new(KeyRing::new(&store.signing_keys().await?)?);

    let hub = SnapshotHub::new();
    hub.refresh(&store).await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(hub::follow_database(
        hub.clone(),
        store.clone(),
        cancel.clone(),
    ));
    tasks.spawn(grpc::reap_silent_workers(
        store.clone(),
        config.heartbeat_interval,
        config.heartbeat_timeout,
        cancel.clone(),
    ));

    let grpc_service = WorkerControlService::new(
        store.clone(),
        hub.clone(),
        config.enrollment_token.clone(),
        config.heartbeat_interval,
    );
    let grpc_listener = tokio::net::TcpListener::from_std(listeners.grpc)
        .map_err(|e| StartError::Server(format!("grpc listener: {e}")))?;
    let grpc_addr = grpc_listener.local_addr().ok();
    let grpc_cancel = cancel.clone();
    let grpc = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(WorkerControlServer::new(grpc_service))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                grpc_cancel.cancelled_owned(),
            )
            .await
    });

    let state = web::Data::new(AppState {
        store: store.clone(),
        keys,
        hub,
        settings: ApiSettings {
            token_lifetime: config.token_lifetime,
            max_body_bytes: config.max_body_bytes,
        },
    });
    let api_addr = listeners.api.local_addr().ok();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service;
                let method = req.method().clone();
                let path = req.path().to_string();
                let started = Instant::now();
                let call = srv.call(req);
                async move {
                    let res = call.await?;
                    // Access log at debug: at thousands of requests a second, info would drown
                    // everything else.
                    tracing::debug!(
                        target: "streamplane_control::http",
                        %method, %path, status = res.status().as_u16(),
                        micros = started.elapsed().as_micros() as u64,
                        "request"
                    );
                    Ok(res)
                }
            })
            .configure(api::configure)
    })
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listeners.api)
    .map_err(|e| StartError::Server(format!("api listener: {e}")))?
    .run();
    let handle = server.handle();
    tracing::info!(api = ?api_addr, grpc = ?grpc_addr, "control plane serving");
    let stopper = cancel.clone();
    tokio::spawn(async move {
        stopper.cancelled().await;
        handle.stop(true).await;
    });
    let api_result = server.await;
    cancel.cancel();
    let grpc_result = grpc.await;
    while tasks.join_next().await.is_some() {}
    api_result.map_err(|e| StartError::Server(format!("api server: {e}")))?;
    match grpc_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StartError::Server(format!("grpc server: {e}"))),
        Err(e) => Err(StartError::Server(format!("grpc task: {e}"))),
    }
}
