//! Which topics a user may use: exact names, prefixes ending in `*`
//! (`jobs.*`), or `*` alone for every topic, as NATS's subject permissions
//! without their token rules (topic names here have no structure).

use serde::{Deserialize, Deserializer};

/// One entry of a permission list in the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every topic.
    All,
    /// `jobs.*`: every topic starting with `jobs.`.
    Prefix(Box<str>),
    /// Any other string: that topic only (a `*` that is not last is an
    /// ordinary character).
    Exact(Box<str>),
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        match text.strip_suffix('*') {
            Some("") => Pattern::All,
            Some(prefix) => Pattern::Prefix(prefix.into()),
            None => Pattern::Exact(text.into()),
        }
    }

    fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Prefix(prefix) => topic.starts_with(&**prefix),
            Pattern::Exact(name) => **name == *topic,
        }
    }
}

/// The topics one permission (`subscribe`, `publish` or `replay`) covers;
/// empty (the default) covers none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics(Vec<Pattern>);

impl Topics {
    /// Every topic, for connections that need no permission at all.
    pub fn all() -> Topics {
        Topics(vec![Pattern::All])
    }

    pub fn allows(&self, topic: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(topic))
    }
}

impl<'de> Deserialize<'de> for Topics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        Ok(Topics(
            texts.iter().map(|text| Pattern::new(text)).collect(),
        ))
    }
}

/// What a user may do; a connection checks it before every command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Topics it may subscribe to.
    #[serde(default)]
    pub subscribe: Topics,
    /// Topics it may send to.
    #[serde(default)]
    pub publish: Topics,
    /// Topics whose cached history it is replayed when it subscribes;
    /// elsewhere it gets live messages only.
    #[serde(default)]
    pub replay: Topics,
}

impl Permissions {
    /// Everything, as for every connection when authentication is off.
    pub fn all() -> Permissions {
        Permissions {
            subscribe: Topics::all(),
            publish: Topics::all(),
            replay: Topics::all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(patterns: &[&str]) -> Topics {
        Topics(patterns.iter().map(|p| Pattern::new(p)).collect())
    }

    #[test]
    fn exact_names_match_only_themselves() {
        let t = topics(&["news"]);
        assert!(t.allows("news"));
        assert!(!t.allows("news2"));
        assert!(!t.allows("new"));
        assert!(!t.allows(""));
    }

    #[test]
    fn prefixes_match_what_starts_with_them() {
        let t = topics(&["jobs.*"]);
        assert!(t.allows("jobs.a"));
        assert!(t.allows("jobs."));
        assert!(t.allows("jobs.a.b"));
        assert!(!t.allows("jobs"));
        assert!(!t.allows("xjobs.a"));
    }

    #[test]
    fn a_star_alone_is_everything_and_inside_a_name_is_literal() {
        assert!(topics(&["*"]).allows(""));
        assert!(topics(&["*"]).allows("anything"));
        let t = topics(&["a*b"]);
        assert!(t.allows("a*b"));
        assert!(!t.allows("axb"));
    }

    #[test]
    fn nothing_listed_allows_nothing() {
        assert!(!Topics::default().allows("news"));
        assert!(topics(&["a", "b.*"]).allows("b.c"));
    }
}
