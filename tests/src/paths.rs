//! Where the repository and the built binaries are.

use std::path::{Path, PathBuf};

/// The repository root (the Cargo workspace), where `scripts/` and `migrations/` live.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit crate lives in tests/, one level below the workspace root")
        .to_path_buf()
}

/// The directory holding the workspace's binaries: `$STREAMPLANE_BIN_DIR` when set (e.g. `target/release` for
/// benchmarks), else the profile directory this test executable was built into (`target/debug/deps/x` →
/// `target/debug`). Works for `cargo test`, `cargo nextest` and `--target` builds alike.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STREAMPLANE_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the running test executable has a path");
    let parent = exe
        .parent()
        .expect("an executable path has a parent directory");
    if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent().unwrap_or(parent).to_path_buf()
    } else {
        // A binary target (e.g. a benchmark client in target/release) runs from the profile directory itself.
        parent.to_path_buf()
    }
}

/// The path of the workspace binary `name` (`streamplane-control`, `streamplane-worker`), panicking with a hint
/// when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let dir = bin_dir();
    let path = dir.join(name);
    if !path.is_file() {
        let hint = if std::env::var_os("STREAMPLANE_BIN_DIR").is_some() {
            "STREAMPLANE_BIN_DIR is set: build that profile (cargo build --release --workspace) or unset it"
        } else {
            "run cargo build --workspace first (cargo test --workspace builds it too; cargo test -p <crate> may not)"
        };
        panic!("binary {name} not found at {}: {hint}", path.display());
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_holds_the_workspace_and_scripts() {
        let root = repo_root();
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
        assert!(root.join("scripts/pg").is_file(), "{}", root.display());
    }

    #[test]
    fn bin_dir_is_the_profile_directory() {
        let dir = bin_dir();
        assert!(
            dir.ends_with("debug")
                || dir.ends_with("release")
                || std::env::var_os("STREAMPLANE_BIN_DIR").is_some(),
            "{}",
            dir.display()
        );
    }

    #[test]
    #[should_panic(expected = "binary streamplane-no-such-binary not found at")]
    fn a_missing_binary_panics_with_a_hint() {
        bin("streamplane-no-such-binary");
    }
}
