//! Walks the YAML tree field by field, applying environment overrides and collecting problems.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::value::FromConfig;
use crate::yaml::{self, Kind, Node, Pos};
use crate::{ConfigError, Origin, Problem};

const ENV_PREFIX: &str = "STREAMPLANE_";

/// Configuration being loaded: the parsed file (if any), the environment, and every problem found.
///
/// Read fields through [`Loader::root`], then call [`Loader::finish`] once.
pub struct Loader {
    file: Option<PathBuf>,
    root: Node,
    env: BTreeMap<String, String>,
    mtx_aliases: bool,
    problems: RefCell<Vec<Problem>>,
    used_env: RefCell<BTreeSet<String>>,
}

impl Loader {
    /// Reads and parses `path`; a missing file or a syntax error is returned at once.
    pub fn from_file(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(
                None,
                path.display().to_string(),
                format!("cannot read the configuration file: {e}"),
            )
        })?;
        Self::from_text(path, &text, env)
    }

    /// Parses `text` as if read from `path` (used in messages).
    pub fn from_text(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let root = yaml::parse(text).map_err(|e| {
            ConfigError::single(
                Some(Origin::File {
                    path: path.to_path_buf(),
                    line: e.pos.line,
                    column: e.pos.column,
                }),
                "(syntax)",
                e.message,
            )
        })?;
        let loader = Loader {
            file: Some(path.to_path_buf()),
            root,
            env: env.into_iter().collect(),
            mtx_aliases: false,
            problems: RefCell::new(Vec::new()),
            used_env: RefCell::new(BTreeSet::new()),
        };
        if !matches!(loader.root.kind, Kind::Map(_)) {
            let pos = loader.root.pos;
            loader.push(
                Some(loader.file_origin(pos)),
                "(root)",
                format!(
                    "the file must be a mapping of keys to values, got {}",
                    loader.root.describe()
                ),
            );
        }
        Ok(loader)
    }

    /// No file: defaults and environment only.
    pub fn without_file(env: impl IntoIterator<Item = (String, String)>) -> Self {
        Loader {
            file: None,
            root: Node {
                pos: Pos { line: 1, column: 1 },
                kind: Kind::Map(Vec::new()),
            },
            env: env.into_iter().collect(),
            mtx_aliases: false,
            problems: RefCell::new(Vec::new()),
            used_env: RefCell::new(BTreeSet::new()),
        }
    }

    /// Also accept MediaMTX's variable names (`MTX_RTSPADDRESS` for `rtspAddress`) at the root.
    pub fn with_mtx_aliases(mut self) -> Self {
        self.mtx_aliases = true;
        self
    }

    pub fn root(&self) -> Section<'_> {
        Section {
            loader: self,
            node: Some(&self.root),
            key_prefix: String::new(),
            env_prefix: Some(ENV_PREFIX.to_string()),
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// Records a problem found while validating across fields.
    pub fn problem(&self, key: impl Into<String>, message: impl Into<String>) {
        self.push(None, key, message);
    }

    /// All problems, or the `STREAMPLANE_*` variables no field used (worth a warning: likely typos).
    pub fn finish(self) -> Result<Vec<String>, ConfigError> {
        let problems = self.problems.into_inner();
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let used = self.used_env.into_inner();
        Ok(self
            .env
            .keys()
            .filter(|k| k.starts_with(ENV_PREFIX) && !used.contains(*k))
            .cloned()
            .collect())
    }

    fn push(&self, origin: Option<Origin>, key: impl Into<String>, message: impl Into<String>) {
        self.problems.borrow_mut().push(Problem {
            origin,
            key: key.into(),
            message: message.into(),
        });
    }

    fn file_origin(&self, pos: Pos) -> Origin {
        Origin::File {
            path: self.file.clone().unwrap_or_default(),
            line: pos.line,
            column: pos.column,
        }
    }
}

/// One mapping of the configuration. Every key asked for counts as known; [`Section::finish`]
/// reports the others as unknown.
pub struct Section<'a> {
    loader: &'a Loader,
    node: Option<&'a Node>,
    key_prefix: String,
    env_prefix: Option<String>,
    read: RefCell<BTreeSet<String>>,
}

impl<'a> Section<'a> {
    /// The value at `key`: from `STREAMPLANE_<KEY>` if set, else the file; `None` when absent or
    /// invalid (the problem is recorded).
    pub fn get<T: FromConfig>(&self, key: &str) -> Option<T> {
        self.get_with_env(key, &[])
    }

    pub fn get_or<T: FromConfig>(&self, key: &str, default: T) -> T {
        self.get(key).unwrap_or(default)
    }

    /// Like [`Section::get`], also trying `extra_env` (in order) after the derived variable names.
    pub fn get_with_env<T: FromConfig>(&self, key: &str, extra_env: &[&str]) -> Option<T> {
        self.read.borrow_mut().insert(key.to_string());
        let full = self.full_key(key);
        for var in self
            .env_names(key)
            .iter()
            .map(String::as_str)
            .chain(extra_env.iter().copied())
        {
            if let Some(text) = self.loader.env.get(var) {
                self.loader.used_env.borrow_mut().insert(var.to_string());
                return match T::from_text(text) {
                    Ok(v) => Some(v),
                    Err(msg) => {
                        self.loader.push(
                            Some(Origin::Env {
                                var: var.to_string(),
                            }),
                            full,
                            msg,
                        );
                        None
                    }
                };
            }
        }
        let node = self.child(key)?;
        let result = match &node.kind {
            Kind::Null => return None,
            Kind::Scalar(text) => T::from_text(text),
            Kind::Seq(items) => {
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    match &item.kind {
                        Kind::Scalar(t) => texts.push(t.clone()),
                        _ => {
                            self.problem_at(
                                item.pos,
                                &full,
                                format!(
                                    "expected a plain value in the list, got {}",
                                    item.describe()
                                ),
                            );
                            return None;
                        }
                    }
                }
                T::from_list(texts)
                    .unwrap_or_else(|| Err("expected a single value, got a list".into()))
            }
            Kind::Map(_) => Err("expected a single value, got a mapping".into()),
        };
        match result {
            Ok(v) => Some(v),
            Err(msg) => {
                self.problem_at(node.pos, &full, msg);
                None
            }
        }
    }

    /// The nested mapping at `key` (empty when absent). Its fields are overridable by
    /// `STREAMPLANE_<KEY>_<FIELD>` when this section is.
    pub fn section(&self, key: &str) -> Section<'a> {
        self.read.borrow_mut().insert(key.to_string());
        let node = self.child(key).filter(|n| self.expect_map(n, key));
        Section {
            loader: self.loader,
            node,
            key_prefix: format!("{}.", self.full_key(key)),
            env_prefix: self
                .env_prefix
                .as_ref()
                .map(|p| format!("{p}{}_", screaming_snake(key))),
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// A mapping of names to sections, e.g. `paths: {cam1: {...}, ...}`, in file order.
    /// Entries are not overridable from the environment.
    pub fn entries(&self, key: &str) -> Vec<(String, Section<'a>)> {
        self.read.borrow_mut().insert(key.to_string());
        let Some(node) = self.child(key).filter(|n| self.expect_map(n, key)) else {
            return Vec::new();
        };
        let Kind::Map(entries) = &node.kind else {
            return Vec::new();
        };
        entries
            .iter()
            .map(|(name, _, value)| {
                let full = format!("{}.{name}", self.full_key(key));
                let node = match value.kind {
                    Kind::Null => None,
                    Kind::Map(_) => Some(value),
                    _ => {
                        self.problem_at(
                            value.pos,
                            &full,
                            format!("expected a mapping, got {}", value.describe()),
                        );
                        None
                    }
                };
                let section = Section {
                    loader: self.loader,
                    node,
                    key_prefix: format!("{full}."),
                    env_prefix: None,
                    read: RefCell::new(BTreeSet::new()),
                };
                (name.clone(), section)
            })
            .collect()
    }

    /// A list of mappings, e.g. `authInternalUsers: [{user: ..}, ...]`.
    pub fn list(&self, key: &str) -> Vec<Section<'a>> {
        self.read.borrow_mut().insert(key.to_string());
        let Some(node) = self.child(key) else {
            return Vec::new();
        };
        let full = self.full_key(key);
        let items = match &node.kind {
            Kind::Null => return Vec::new(),
            Kind::Seq(items) => items,
            _ => {
                self.problem_at(
                    node.pos,
                    &full,
                    format!("expected a list, got {}", node.describe()),
                );
                return Vec::new();
            }
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item_key = format!("{full}[{i}]");
                if !matches!(item.kind, Kind::Map(_)) {
                    self.problem_at(
                        item.pos,
                        &item_key,
                        format!("expected a mapping, got {}", item.describe()),
                    );
                    return None;
                }
                Some(Section {
                    loader: self.loader,
                    node: Some(item),
                    key_prefix: format!("{item_key}."),
                    env_prefix: None,
                    read: RefCell::new(BTreeSet::new()),
                })
            })
            .collect()
    }

    /// Whether the file or the environment sets `key`.
    pub fn is_set(&self, key: &str) -> bool {
        self.env_names(key)
            .iter()
            .any(|v| self.loader.env.contains_key(v))
            || self
                .child(key)
                .is_some_and(|n| !matches!(n.kind, Kind::Null))
    }

    /// Records a validation problem at `key`, located where that key was set (no location when
    /// it was not set: the problem is its absence).
    pub fn problem(&self, key: &str, message: impl Into<String>) {
        let origin = self
            .env_names(key)
            .into_iter()
            .find(|v| self.loader.env.contains_key(v))
            .map(|var| Origin::Env { var })
            .or_else(|| self.child(key).map(|n| self.loader.file_origin(n.pos)));
        self.loader.push(origin, self.full_key(key), message);
    }

    /// Reports every key of this mapping that no field asked for.
    pub fn finish(self) {
        let Some(Node {
            kind: Kind::Map(entries),
            ..
        }) = self.node
        else {
            return;
        };
        let read = self.read.borrow();
        for (key, pos, _) in entries {
            if read.contains(key) {
                continue;
            }
            let message = match read.iter().find(|k| similar(k, key)) {
                Some(known) => format!("unknown key; did you mean {known:?}?"),
                None => format!(
                    "unknown key; known keys here: {}",
                    read.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            self.problem_at(*pos, &self.full_key(key), message);
        }
    }

    fn child(&self, key: &str) -> Option<&'a Node> {
        match self.node {
            Some(Node {
                kind: Kind::Map(entries),
                ..
            }) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    fn expect_map(&self, node: &Node, key: &str) -> bool {
        match node.kind {
            Kind::Map(_) => true,
            Kind::Null => false,
            _ => {
                self.problem_at(
                    node.pos,
                    &self.full_key(key),
                    format!("expected a mapping, got {}", node.describe()),
                );
                false
            }
        }
    }

    fn env_names(&self, key: &str) -> Vec<String> {
        let Some(prefix) = &self.env_prefix else {
            return Vec::new();
        };
        let mut names = vec![format!("{prefix}{}", screaming_snake(key))];
        if self.loader.mtx_aliases && self.key_prefix.is_empty() {
            names.push(format!("MTX_{}", key.to_ascii_uppercase()));
        }
        names
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    fn problem_at(&self, pos: Pos, key: &str, message: impl Into<String>) {
        self.loader
            .push(Some(self.loader.file_origin(pos)), key, message);
    }
}

/// `rtspAddress` → `RTSP_ADDRESS`.
fn screaming_snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(if c == '-' || c == '.' {
            '_'
        } else {
            c.to_ascii_uppercase()
        });
    }
    out
}

/// Same ignoring case, or one edit apart: enough to catch typos like `apiAdress`.
fn similar(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment() {
        let text = "apiAddress: 127.0.0.1:1000\nreadTimeout: 5s\n";
        let loader = Loader::from_text(
            Path::new("c.yml"),
            text,
            env(&[("STREAMPLANE_API_ADDRESS", ":2000")]),
        )
        .unwrap();
        let root = loader.root();
        let addr: Option<SocketAddr> = root.get("apiAddress");
        let timeout: Duration = root.get_or("readTimeout", Duration::from_secs(1));
        let missing: u16 = root.get_or("other", 7);
        root.finish();
        assert_eq!(addr, Some("0.0.0.0:2000".parse().unwrap()));
        assert_eq!(timeout, Duration::from_secs(5));
        assert_eq!(missing, 7);
        assert!(loader.finish().unwrap().is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text =
            "apiAddress: nowhere\nreadTimeout: 5 parsecs\napiAdress: x\nnested:\n  deep: [1, 2]\n";
        let loader =
            Loader::from_text(Path::new("c.yml"), text, env(&[("STREAMPLANE_PORT", "x")])).unwrap();
        let root = loader.root();
        let _: Option<SocketAddr> = root.get("apiAddress");
        let _: Option<Duration> = root.get("readTimeout");
        let _: Option<u16> = root.get("port");
        let nested = root.section("nested");
        let _: Option<String> = nested.get("deep");
        nested.finish();
        root.finish();
        let err = loader.finish().unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(
            text.contains("c.yml:1:13: apiAddress: expected an address"),
            "{text}"
        );
        assert!(
            text.contains("c.yml:2:14: readTimeout: expected a duration"),
            "{text}"
        );
        assert!(
            text.contains("environment variable STREAMPLANE_PORT: port:"),
            "{text}"
        );
        assert!(
            text.contains("c.yml:3:1: apiAdress: unknown key; did you mean \"apiAddress\"?"),
            "{text}"
        );
        assert!(
            text.contains("c.yml:5:9: nested.deep: expected a single value, got a list"),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = Loader::from_text(Path::new("bad.yml"), "a: [1, 2\nb: c\n", Vec::new())
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("bad.yml:"), "{text}");
        assert_eq!(err.problems.len(), 1);
    }

    #[test]
    fn entries_lists_and_aliases() {
        let text = "paths:\n  cam1:\n    source: publisher\n  all:\nusers:\n  - user: a\n  - 3\n";
        let loader = Loader::from_text(
            Path::new("c.yml"),
            text,
            env(&[("MTX_RTSPADDRESS", ":1"), ("STREAMPLANE_TYPO", "1")]),
        )
        .unwrap()
        .with_mtx_aliases();
        let root = loader.root();
        let paths = root.entries("paths");
        assert_eq!(
            paths.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["cam1", "all"]
        );
        for (_, p) in paths {
            let _: Option<String> = p.get("source");
            p.finish();
        }
        let users = root.list("users");
        assert_eq!(users.len(), 1);
        let rtsp: Option<SocketAddr> = root.get("rtspAddress");
        assert!(rtsp.is_some());
        root.finish();
        let err = loader.finish().unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.to_string()
                .contains("c.yml:7:5: users[1]: expected a mapping"),
            "{err}"
        );
    }

    #[test]
    fn unused_streamplane_variables_are_returned() {
        let loader = Loader::without_file(env(&[("STREAMPLANE_TYPO", "1"), ("HOME", "/")]));
        loader.root().finish();
        assert_eq!(
            loader.finish().unwrap(),
            vec!["STREAMPLANE_TYPO".to_string()]
        );
    }

    #[test]
    fn names() {
        assert_eq!(screaming_snake("rtspAddress"), "RTSP_ADDRESS");
        assert_eq!(screaming_snake("authInternalUsers"), "AUTH_INTERNAL_USERS");
        assert!(similar("apiAddress", "apiAdress"));
        assert!(!similar("apiAddress", "grpcAddress"));
    }
}
