//! The desired state every worker should run, kept current from Postgres.
//!
//! Any control-plane process may change the database; triggers bump the generation and
//! `NOTIFY streamplane_desired_state`. Every process listens, rebuilds the full snapshot and
//! publishes it on a `watch` channel that each connected worker's stream follows. A generation
//! never goes backwards: an older snapshot read late is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use streamplane_proto::v1 as pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use uuid::Uuid;

use crate::domain::{PathResolver, Role};
use crate::grpc::convert::snapshot_to_proto;
use crate::store::paths::PathRow;
use crate::store::{Snapshot, Store, StoreError};

pub const CHANNEL: &str = "streamplane_desired_state";

/// What the REST API needs to know about a user on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserBrief {
    pub username: String,
    pub role: Option<Role>,
    pub disabled: bool,
}

/// One published generation: the snapshot workers get, plus an index the REST API authorises
/// against without a database round trip.
#[derive(Debug, Default)]
pub struct Published {
    pub state: pb::DesiredState,
    pub users: HashMap<Uuid, UserBrief>,
    /// Every path, ordered by name (bytewise), for list reads without a database round trip.
    pub paths: Vec<PathRow>,
    /// Which configured path a reported concrete name belongs to.
    pub resolver: PathResolver,
}

impl Published {
    pub fn from_snapshot(s: &Snapshot) -> Self {
        Published {
            state: snapshot_to_proto(s),
            paths: s.paths.clone(),
            resolver: PathResolver::new(s.paths.iter().map(|p| p.name.as_str())),
            users: s
                .users
                .iter()
                .map(|u| {
                    let brief = UserBrief {
                        username: u.username.clone(),
                        role: u.role(),
                        disabled: u.disabled,
                    };
                    (u.id, brief)
                })
                .collect(),
        }
    }
}

#[derive(Clone)]
pub struct SnapshotHub {
    tx: Arc<watch::Sender<Arc<Published>>>,
}

impl Default for SnapshotHub {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotHub {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(Published::default()));
        SnapshotHub { tx: Arc::new(tx) }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    pub fn generation(&self) -> u64 {
        self.tx.borrow().state.generation
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Published> {
        self.tx.borrow().clone()
    }

    /// The user as of the current generation.
    pub fn user(&self, id: Uuid) -> Option<UserBrief> {
        self.tx.borrow().users.get(&id).cloned()
    }

    /// Publishes `p` if it is newer than the current one; returns whether it was.
    pub fn publish(&self, p: Published) -> bool {
        let p = Arc::new(p);
        self.tx.send_if_modified(|current| {
            if p.state.generation > current.state.generation {
                *current = p.clone();
                true
            } else {
                false
            }
        })
    }

    /// Reads a fresh snapshot and publishes it.
    pub async fn refresh(&self, store: &Store) -> Result<u64, StoreError> {
        let snapshot = store.snapshot().await?;
        let generation = snapshot.generation;
        if self.publish(Published::from_snapshot(&snapshot)) {
            tracing::debug!(generation, "desired state published");
        }
        Ok(generation)
    }
}

/// Follows database notifications until cancelled, refreshing the hub on each change and after
/// every reconnection (notifications sent while disconnected are lost).
pub async fn follow_database(hub: SnapshotHub, store: Store, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listen_once(&hub, &store) => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "desired-state listener failed; retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(hub: &SnapshotHub, store: &Store) -> Result<(), StoreError> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(CHANNEL).await?;
    // Anything that changed before LISTEN took effect.
    hub.refresh(store).await?;
    loop {
        match listener.try_recv().await? {
            Some(n) => {
                let announced: u64 = n.payload().parse().unwrap_or(0);
                if announced > hub.generation() {
                    hub.refresh(store).await?;
                }
            }
            None => {
                tracing::info!("desired-state listener reconnected; refreshing");
                hub.refresh(store).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_never_go_backwards() {
        let at = |generation| Published {
            state: pb::DesiredState {
                generation,
                ..Default::default()
            },
            users: HashMap::new(),
            paths: Vec::new(),
            resolver: PathResolver::default(),
        };
        let hub = SnapshotHub::new();
        let mut rx = hub.subscribe();
        assert!(hub.publish(at(5)));
        assert!(!hub.publish(at(3)));
        assert!(!hub.publish(at(5)));
        assert_eq!(hub.generation(), 5);
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(rx.borrow_and_update().state.generation, 5);
    }
}
