//! Generates the tonic client and server from `proto/`. Uses the vendored protoc unless `PROTOC`
//! is set, so a fresh machine needs no system package.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut config = prost_build::Config::new();
    let mut includes = vec![PathBuf::from("proto")];
    match std::env::var_os("PROTOC") {
        Some(protoc) => {
            config.protoc_executable(protoc);
        }
        None => {
            config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
            includes.push(protoc_bin_vendored::include_path()?);
        }
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Carries password hashes: Debug is written by hand so they never reach a log.
        .skip_debug(["streamplane.v1.User"])
        .compile_with_config(
            config,
            &[PathBuf::from("proto/streamplane/v1/control.proto")],
            &includes,
        )?;
    Ok(())
}
