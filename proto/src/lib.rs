//! Generated protobuf and gRPC types for the control plane <-> worker contract.
//!
//! Wire types only: each side converts them into its own domain types at the edge.

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("streamplane.v1");

    impl std::fmt::Debug for User {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("User")
                .field("id", &self.id)
                .field("username", &self.username)
                .field("password_hash", &"***")
                .field("role", &self.role)
                .field("disabled", &self.disabled)
                .field("digest_ha1", &self.digest_ha1.as_ref().map(|_| "***"))
                .finish()
        }
    }
}

pub use prost_types::Timestamp;

/// The realm of RTSP authentication challenges. Part of the contract: the control plane
/// computes `User.digest_ha1` with it and workers send it in their Digest challenges, so
/// changing it invalidates every stored HA1.
pub const RTSP_REALM: &str = "streamplane";
