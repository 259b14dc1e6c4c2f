//! Path names and path rules with MediaMTX semantics.
//!
//! A client asks for a concrete [`PathName`]; the configuration holds [`PathPattern`]s (an exact
//! name, or `~` followed by a regular expression) and [`PathRules`] picks the one that applies.
//! Names are validated once at the edge so that nothing downstream (recording file names, URLs,
//! log lines) ever sees `..`, `//` or characters outside a small ASCII set.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use regex::{Captures, Regex, RegexBuilder};

/// A validated, concrete path name such as `cam1` or `site-a/door.2`.
///
/// Invariants: 1..=[`PathName::MAX_LEN`] bytes of `[0-9a-zA-Z_\-/.]`, no leading or trailing
/// `/`, no empty segment, no `.` or `..` segment. The last two keep names safe to use as
/// relative file paths (MediaMTX rejects dot segments for the same reason).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathName(String);

/// Why a string is not a valid [`PathName`]. Offsets are in bytes from the start of the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPathName {
    #[error("path name is empty")]
    Empty,
    #[error("path name is {len} bytes long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("path name contains {ch:?} at byte {offset}; allowed: ASCII letters, digits, _ - / .")]
    InvalidChar { ch: char, offset: usize },
    #[error("path name must not start with '/'")]
    LeadingSlash,
    #[error("path name must not end with '/'")]
    TrailingSlash,
    #[error("path name contains an empty segment ('//') at byte {offset}")]
    EmptySegment { offset: usize },
    #[error("path name contains a '.' or '..' segment at byte {offset}")]
    DotSegment { offset: usize },
}

impl PathName {
    /// Longest accepted name, in bytes. MediaMTX has no limit; ours bounds memory per session
    /// and keeps names usable as file names.
    pub const MAX_LEN: usize = 255;

    /// Validates `name`, keeping its allocation.
    pub fn parse(name: String) -> Result<Self, InvalidPathName> {
        validate_name(&name)?;
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks in MediaMTX's order (empty, slashes, characters, segments) so that users see the
/// same first complaint for the same mistake.
fn validate_name(name: &str) -> Result<(), InvalidPathName> {
    if name.is_empty() {
        return Err(InvalidPathName::Empty);
    }
    if name.len() > PathName::MAX_LEN {
        return Err(InvalidPathName::TooLong {
            len: name.len(),
            max: PathName::MAX_LEN,
        });
    }
    if name.starts_with('/') {
        return Err(InvalidPathName::LeadingSlash);
    }
    if name.ends_with('/') {
        return Err(InvalidPathName::TrailingSlash);
    }
    if let Some((offset, ch)) = name.char_indices().find(|&(_, c)| !is_name_char(c)) {
        return Err(InvalidPathName::InvalidChar { ch, offset });
    }
    let mut offset = 0;
    for segment in name.split('/') {
        match segment {
            // Cannot be the first or last segment: leading and trailing '/' were rejected.
            "" => return Err(InvalidPathName::EmptySegment { offset: offset - 1 }),
            "." | ".." => return Err(InvalidPathName::DotSegment { offset }),
            _ => {}
        }
        offset += segment.len() + 1;
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.')
}

impl FromStr for PathName {
    type Err = InvalidPathName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        validate_name(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for PathName {
    type Error = InvalidPathName;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for PathName {
    type Error = InvalidPathName;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for PathName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PathName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for PathName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `PathName` be queried with a `&str`; sound because `Eq`, `Ord` and `Hash`
/// are those of the inner `String`.
impl Borrow<str> for PathName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A compiled regular expression together with the source it came from.
///
/// Kept opaque so that `source` and the compiled regex can never disagree: equality, hashing
/// and display all go by the source.
#[derive(Clone)]
pub struct PathRegex {
    source: String,
    regex: Regex,
}

impl PathRegex {
    /// Upper bound on the compiled program, so a hostile or careless pattern cannot make the
    /// worker allocate without limit.
    pub const SIZE_LIMIT: usize = 1 << 20;

    /// Compiles `source` (without the leading `~`).
    pub fn new(source: &str) -> Result<Self, InvalidPathPattern> {
        if source.is_empty() {
            return Err(InvalidPathPattern::EmptyRegex);
        }
        let regex = RegexBuilder::new(source)
            .size_limit(Self::SIZE_LIMIT)
            .build()
            .map_err(|e| InvalidPathPattern::Regex {
                pattern: source.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The expression as written, without the leading `~`.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn regex(&self) -> &Regex {
        &self.regex
    }
}

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for PathRegex {}

impl Hash for PathRegex {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl fmt::Debug for PathRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

/// What a path configuration or an ACL rule applies to: `cam1`, or `~^cam(\d+)$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathPattern {
    Exact(PathName),
    Regex(PathRegex),
}

/// Why a string is not a valid [`PathPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPathPattern {
    #[error(transparent)]
    Name(#[from] InvalidPathName),
    #[error("regular expression after '~' is empty")]
    EmptyRegex,
    #[error("invalid regular expression '{pattern}': {message}")]
    Regex { pattern: String, message: String },
}

impl PathPattern {
    /// The prefix that marks a regular expression. Concrete names cannot contain it, so the
    /// two forms never overlap.
    pub const REGEX_PREFIX: char = '~';

    /// Whether `name` is covered, and what the regex captured.
    ///
    /// Like MediaMTX (`regexp.FindStringSubmatch`), the regex search is unanchored: `~cam`
    /// matches `backcam2`. Users who want whole-name matches write `^...$`.
    pub fn matches<'n>(&self, name: &'n PathName) -> Option<PathMatch<'n>> {
        match self {
            Self::Exact(exact) => (exact == name).then_some(PathMatch {
                name: name.as_str(),
                captures: None,
            }),
            Self::Regex(re) => re.regex.captures(name.as_str()).map(|c| PathMatch {
                name: name.as_str(),
                captures: Some(c),
            }),
        }
    }

    /// [`Self::matches`] without collecting captures, for scanning many patterns.
    pub fn is_match(&self, name: &PathName) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Regex(re) => re.regex.is_match(name.as_str()),
        }
    }

    pub fn is_regex(&self) -> bool {
        matches!(self, Self::Regex(_))
    }

    /// Within one kind, byte order of this key is byte order of the displayed pattern.
    fn sort_key(&self) -> &str {
        match self {
            Self::Exact(name) => name.as_str(),
            Self::Regex(re) => &re.source,
        }
    }
}

impl FromStr for PathPattern {
    type Err = InvalidPathPattern;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(Self::REGEX_PREFIX) {
            Some(source) => Ok(Self::Regex(PathRegex::new(source)?)),
            None => Ok(Self::Exact(s.parse()?)),
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name.as_str()),
            Self::Regex(re) => write!(f, "{}{}", Self::REGEX_PREFIX, re.source),
        }
    }
}

/// The result of a successful [`PathPattern::matches`].
///
/// Group 0 is the matched text (the whole name for an exact pattern); groups 1.. are the
/// regex's capture groups, which MediaMTX exposes as `$G1`, `$G2`, ... in source URLs.
#[derive(Debug)]
pub struct PathMatch<'n> {
    name: &'n str,
    captures: Option<Captures<'n>>,
}

impl<'n> PathMatch<'n> {
    /// Capture group `i`; `None` when it does not exist or did not take part in the match.
    pub fn get(&self, i: usize) -> Option<&'n str> {
        match &self.captures {
            Some(c) => c.get(i).map(|m| m.as_str()),
            None => (i == 0).then_some(self.name),
        }
    }

    /// Named capture group, e.g. `(?P<id>\d+)`.
    pub fn name(&self, group: &str) -> Option<&'n str> {
        self.captures
            .as_ref()
            .and_then(|c| c.name(group))
            .map(|m| m.as_str())
    }

    /// Number of groups including group 0.
    pub fn group_count(&self) -> usize {
        self.captures.as_ref().map_or(1, Captures::len)
    }
}

/// The same pattern was given twice; which entry wins would otherwise depend on input order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path pattern '{pattern}' is configured more than once")]
pub struct DuplicatePattern {
    pub pattern: String,
}

/// Patterns with attached values (path configurations), looked up in MediaMTX order.
///
/// Order: an exact name wins; otherwise the first regex, in byte order of its source, that
/// matches. Sorting makes the choice independent of configuration order, as MediaMTX does with
/// its `paths` map. A catch-all such as `~^.*$` is an ordinary regex and sorts like one.
#[derive(Debug, Clone)]
pub struct PathRules<T> {
    /// Exact names to their index in `entries`.
    exact: HashMap<PathName, usize>,
    /// All entries: exact ones first, then regexes sorted by source.
    entries: Vec<(PathPattern, T)>,
    /// Index of the first regex entry.
    first_regex: usize,
}

impl<T> Default for PathRules<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            entries: Vec::new(),
            first_regex: 0,
        }
    }
}

impl<T> PathRules<T> {
    /// Builds the rule set. Any pattern given twice (same exact name, or same regex source)
    /// is rejected.
    pub fn new(
        entries: impl IntoIterator<Item = (PathPattern, T)>,
    ) -> Result<Self, DuplicatePattern> {
        let (mut exact, mut regex): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(p, _)| !p.is_regex());
        exact.sort_by(|a, b| a.0.sort_key().cmp(b.0.sort_key()));
        regex.sort_by(|a, b| a.0.sort_key().cmp(b.0.sort_key()));
        for pair in exact.windows(2).chain(regex.windows(2)) {
            if let [(a, _), (b, _)] = pair
                && a == b
            {
                return Err(DuplicatePattern {
                    pattern: a.to_string(),
                });
            }
        }
        let first_regex = exact.len();
        let mut entries = exact;
        entries.append(&mut regex);
        let exact = entries[..first_regex]
            .iter()
            .enumerate()
            .filter_map(|(i, (p, _))| match p {
                PathPattern::Exact(name) => Some((name.clone(), i)),
                PathPattern::Regex(_) => None,
            })
            .collect();
        Ok(Self {
            exact,
            entries,
            first_regex,
        })
    }

    /// The entry that applies to `name`, if any. Use [`PathPattern::matches`] on the returned
    /// pattern to read regex captures.
    pub fn find(&self, name: &PathName) -> Option<(&PathPattern, &T)> {
        let index = match self.exact.get(name) {
            Some(&i) => i,
            None => {
                self.first_regex
                    + self.entries[self.first_regex..]
                        .iter()
                        .position(|(p, _)| p.is_match(name))?
            }
        };
        self.entries.get(index).map(|(p, v)| (p, v))
    }

    /// Entries in lookup order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&PathPattern, &T)> {
        self.entries.iter().map(|(p, v)| (p, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> PathName {
        s.parse().unwrap()
    }

    fn pat(s: &str) -> PathPattern {
        s.parse().unwrap()
    }

    #[test]
    fn accepts_valid_names() {
        for s in [
            "cam1",
            "a",
            "site-a/door.2",
            "A_b-C.d/e",
            "x/.hidden/y",
            "a/.../b",
            "1.2.3",
        ] {
            assert_eq!(name(s).as_str(), s);
        }
        let longest = "a".repeat(PathName::MAX_LEN);
        assert!(PathName::parse(longest).is_ok());
    }

    #[test]
    fn rejects_invalid_names_with_precise_errors() {
        use InvalidPathName::*;
        let cases: &[(&str, InvalidPathName)] = &[
            ("", Empty),
            ("/cam", LeadingSlash),
            ("/", LeadingSlash),
            ("cam/", TrailingSlash),
            ("cam?x", InvalidChar { ch: '?', offset: 3 }),
            ("cam x", InvalidChar { ch: ' ', offset: 3 }),
            ("~cam", InvalidChar { ch: '~', offset: 0 }),
            (
                "ab\u{e9}c",
                InvalidChar {
                    ch: '\u{e9}',
                    offset: 2,
                },
            ),
            (
                "a\0",
                InvalidChar {
                    ch: '\0',
                    offset: 1,
                },
            ),
            ("a//b", EmptySegment { offset: 1 }),
            ("ab/c//d", EmptySegment { offset: 4 }),
            (".", DotSegment { offset: 0 }),
            ("..", DotSegment { offset: 0 }),
            ("a/../b", DotSegment { offset: 2 }),
            ("a/b/.", DotSegment { offset: 4 }),
        ];
        for (input, expected) in cases {
            assert_eq!(
                input.parse::<PathName>().as_ref(),
                Err(expected),
                "{input:?}"
            );
        }
        let long = "a".repeat(PathName::MAX_LEN + 1);
        assert_eq!(PathName::parse(long), Err(TooLong { len: 256, max: 255 }));
    }

    #[test]
    fn error_messages_are_readable() {
        let err = "live?cam".parse::<PathName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "path name contains '?' at byte 4; allowed: ASCII letters, digits, _ - / ."
        );
        let err = "a\nb".parse::<PathName>().unwrap_err();
        assert!(err.to_string().contains(r"'\n' at byte 1"), "{err}");
        let err = "~(".parse::<PathPattern>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid regular expression '(': "),
            "{err}"
        );
    }

    #[test]
    fn pattern_parsing() {
        assert_eq!(pat("cam1"), PathPattern::Exact(name("cam1")));
        assert!(pat("~^cam\\d+$").is_regex());
        assert_eq!(
            "~".parse::<PathPattern>(),
            Err(InvalidPathPattern::EmptyRegex)
        );
        assert_eq!(
            "".parse::<PathPattern>(),
            Err(InvalidPathPattern::Name(InvalidPathName::Empty))
        );
        assert!(matches!(
            "~a(".parse::<PathPattern>(),
            Err(InvalidPathPattern::Regex { pattern, .. }) if pattern == "a("
        ));
        assert!(matches!(
            "cam//1".parse::<PathPattern>(),
            Err(InvalidPathPattern::Name(InvalidPathName::EmptySegment {
                offset: 3
            }))
        ));
    }

    #[test]
    fn oversized_regex_is_rejected() {
        let err = "~a{1000}{1000}".parse::<PathPattern>().unwrap_err();
        assert!(err.to_string().contains("size limit"), "{err}");
    }

    #[test]
    fn pattern_equality_goes_by_source() {
        assert_eq!(pat("~^a$"), pat("~^a$"));
        // Equivalent expressions with different sources are different patterns.
        assert_ne!(pat("~^a$"), pat("~^(a)$"));
        assert_ne!(pat("~cam"), pat("cam"));
    }

    #[test]
    fn exact_match() {
        let cam1 = name("cam1");
        let m = pat("cam1").matches(&cam1).unwrap();
        assert_eq!(m.get(0), Some("cam1"));
        assert_eq!(m.get(1), None);
        assert_eq!(m.group_count(), 1);
        assert!(pat("cam1").matches(&name("cam10")).is_none());
    }

    #[test]
    fn regex_match_is_unanchored_like_mediamtx() {
        assert!(pat("~cam").matches(&name("backcam2")).is_some());
        assert!(pat("~^cam$").matches(&name("backcam2")).is_none());
        assert!(pat("~cam").is_match(&name("backcam2")));
        assert!(!pat("~^cam$").is_match(&name("backcam2")));
        let n = name("site-b/cam42");
        let m = pat(r"~^site-(?P<site>\w)/cam(\d+)$").matches(&n).unwrap();
        assert_eq!(m.get(0), Some("site-b/cam42"));
        assert_eq!(m.get(2), Some("42"));
        assert_eq!(m.name("site"), Some("b"));
        assert_eq!(m.group_count(), 3);
        let b = name("b");
        let m = pat("~^(a)|(b)$").matches(&b).unwrap();
        assert_eq!(m.get(1), None, "non-participating group");
        assert_eq!(m.get(2), Some("b"));
    }

    fn rules(patterns: &[&str]) -> PathRules<usize> {
        PathRules::new(patterns.iter().enumerate().map(|(i, p)| (pat(p), i))).unwrap()
    }

    fn found(rules: &PathRules<usize>, n: &str) -> Option<String> {
        rules.find(&name(n)).map(|(p, _)| p.to_string())
    }

    #[test]
    fn exact_names_win_over_regexes() {
        let r = rules(&["~^cam", "cam1", "~.*"]);
        assert_eq!(found(&r, "cam1").as_deref(), Some("cam1"));
        assert_eq!(r.find(&name("cam1")).map(|(_, v)| *v), Some(1));
        assert_eq!(found(&r, "cam2").as_deref(), Some("~.*"));
    }

    #[test]
    fn regexes_are_tried_in_source_order_not_input_order() {
        for input in [["~^x/b", "~^x/ab", "~^x/a"], ["~^x/a", "~^x/b", "~^x/ab"]] {
            let r = rules(&input);
            let order: Vec<_> = r.iter().map(|(p, _)| p.to_string()).collect();
            assert_eq!(order, ["~^x/a", "~^x/ab", "~^x/b"]);
            // Both "~^x/a" and "~^x/ab" match; the first in byte order wins.
            assert_eq!(found(&r, "x/ab").as_deref(), Some("~^x/a"));
            assert_eq!(found(&r, "x/b1").as_deref(), Some("~^x/b"));
            assert_eq!(found(&r, "y"), None);
        }
    }

    /// Documents a MediaMTX-compatible trap: `(`, `.` and `[` sort before letters, so generic
    /// expressions are tried before specific ones, and a user-written catch-all shadows every
    /// regex sorting after it. (MediaMTX only keeps its special `all_others` key last.)
    #[test]
    fn catch_all_is_just_a_regex() {
        let r = rules(&["~^cam(\\d+)$", "~^.*$", "live"]);
        assert_eq!(found(&r, "live").as_deref(), Some("live"));
        assert_eq!(found(&r, "cam1").as_deref(), Some("~^.*$"));
        let r = rules(&["~^cam/a", "~^cam/(.*)$"]);
        assert_eq!(found(&r, "cam/a1").as_deref(), Some("~^cam/(.*)$"));
        let r = rules(&["~^cam(\\d+)$", "~^z*.*$"]);
        assert_eq!(found(&r, "cam1").as_deref(), Some("~^cam(\\d+)$"));
    }

    #[test]
    fn duplicates_are_rejected() {
        let dup = |ps: &[&str]| PathRules::new(ps.iter().map(|p| (pat(p), ()))).unwrap_err();
        assert_eq!(dup(&["a", "b", "a"]).pattern, "a");
        assert_eq!(dup(&["~x", "a", "~x"]).pattern, "~x");
        assert_eq!(
            dup(&["a", "a"]).to_string(),
            "path pattern 'a' is configured more than once"
        );
        assert!(PathRules::new([(pat("x"), ()), (pat("~x"), ())]).is_ok());
    }

    #[test]
    fn empty_rules_find_nothing() {
        let r = PathRules::<()>::default();
        assert!(r.is_empty());
        assert!(r.find(&name("a")).is_none());
    }

    fn valid_name() -> impl Strategy<Value = String> {
        let segment = "[0-9a-zA-Z_.-]{1,12}".prop_filter("dot segment", |s| s != "." && s != "..");
        prop::collection::vec(segment, 1..8).prop_map(|segments| segments.join("/"))
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(s in valid_name()) {
            let n = PathName::parse(s.clone()).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert_eq!(n.to_string().parse::<PathName>().unwrap(), n.clone());
            prop_assert_eq!(pat(&s), PathPattern::Exact(n));
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = PathName::parse(s.clone());
            let _ = s.parse::<PathPattern>();
        }

        #[test]
        fn parse_never_panics_near_valid(s in "[a-z./~_?-]{0,20}") {
            if let Ok(n) = s.parse::<PathName>() {
                prop_assert_eq!(n.as_str(), s.as_str());
                prop_assert!(!n.as_str().split('/').any(|seg| seg.is_empty() || seg == "." || seg == ".."));
            }
            let _ = s.parse::<PathPattern>();
        }

        #[test]
        fn pattern_display_round_trips(s in prop_oneof![valid_name(), "~[a-z0-9.*+?^$()|/\\\\]{1,16}"]) {
            if let Ok(p) = s.parse::<PathPattern>() {
                prop_assert_eq!(p.to_string(), s.clone());
                prop_assert_eq!(p.to_string().parse::<PathPattern>().unwrap(), p);
            }
        }
    }
}
