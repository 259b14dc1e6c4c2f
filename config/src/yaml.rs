//! A small positioned YAML tree: saphyr's marked nodes reduced to what configuration needs.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Pos, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

impl Node {
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Scalar(_) => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. An empty document is an empty mapping.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| SyntaxError {
        pos: Pos {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    })?;
    let mut docs = docs.into_iter();
    let Some(first) = docs.next() else {
        return Ok(Node {
            pos: Pos { line: 1, column: 1 },
            kind: Kind::Map(Vec::new()),
        });
    };
    if let Some(extra) = docs.next() {
        return Err(SyntaxError {
            pos: pos_of(&extra),
            message: "only one YAML document is allowed".into(),
        });
    }
    convert(first)
}

fn pos_of(node: &MarkedYamlOwned) -> Pos {
    Pos {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn convert(node: MarkedYamlOwned) -> Result<Node, SyntaxError> {
    let pos = pos_of(&node);
    let kind = match node.data {
        YamlDataOwned::Value(ScalarOwned::Null) => Kind::Null,
        YamlDataOwned::Value(v) => Kind::Scalar(scalar_text(v)),
        YamlDataOwned::Representation(s, _, _) => Kind::Scalar(s),
        YamlDataOwned::Tagged(_, inner) => return convert(*inner),
        YamlDataOwned::Sequence(items) => {
            Kind::Seq(items.into_iter().map(convert).collect::<Result<_, _>>()?)
        }
        YamlDataOwned::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map {
                let kpos = pos_of(&k);
                let key = match k.data {
                    YamlDataOwned::Value(ScalarOwned::Null) => {
                        return Err(SyntaxError {
                            pos: kpos,
                            message: "a mapping key may not be empty".into(),
                        });
                    }
                    YamlDataOwned::Value(v) => scalar_text(v),
                    YamlDataOwned::Representation(s, _, _) => s,
                    _ => {
                        return Err(SyntaxError {
                            pos: kpos,
                            message: "a mapping key must be a plain string".into(),
                        });
                    }
                };
                entries.push((key, kpos, convert(v)?));
            }
            Kind::Map(entries)
        }
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => {
            return Err(SyntaxError {
                pos,
                message: "aliases and invalid values are not supported here".into(),
            });
        }
    };
    Ok(Node { pos, kind })
}

fn scalar_text(v: ScalarOwned) -> String {
    match v {
        ScalarOwned::Null => String::new(),
        ScalarOwned::Boolean(b) => b.to_string(),
        ScalarOwned::Integer(i) => i.to_string(),
        ScalarOwned::FloatingPoint(f) => f.to_string(),
        ScalarOwned::String(s) => s,
    }
}
