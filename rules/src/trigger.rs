//! Trigger patterns (`cart.updated`, `cart.*`, `order.>`) and the index that finds the rules an
//! event type triggers without looking at the rules it does not.

use std::collections::HashMap;

/// A validated trigger: dot-separated tokens, `*` matching exactly one token and a final `>`
/// matching one or more, as in NATS subjects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern(String);

/// Whether `event_type` matches `pattern`, a pattern text [`Pattern::parse`] accepted before
/// (a touch's goal, stored with the profile): matched as it is, nothing parsed or allocated.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut subject = event_type.split('.');
    loop {
        match (pattern.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("a trigger must not be empty".into());
        }
        let tokens: Vec<&str> = text.split('.').collect();
        for (position, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(format!("\"{text}\" has an empty token"));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("\"{text}\" contains white space"));
            }
            let wildcard_inside = token.len() > 1 && (token.contains('*') || token.contains('>'));
            if wildcard_inside {
                return Err(format!(
                    "\"{text}\": `*` and `>` must stand alone between dots"
                ));
            }
            if *token == ">" && position + 1 != tokens.len() {
                return Err(format!("\"{text}\": `>` may only be the last token"));
            }
        }
        Ok(Pattern(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reference matcher; the index must agree with it (checked by a property test).
    pub fn matches(&self, event_type: &str) -> bool {
        pattern_matches(&self.0, event_type)
    }
}

/// A token trie from trigger patterns to values. Lookup cost grows with the number of tokens in
/// the event type and the number of matches, not with the number of patterns.
#[derive(Debug, Clone)]
pub struct TriggerIndex<T> {
    root: Node<T>,
}

#[derive(Debug, Clone)]
struct Node<T> {
    literal: HashMap<String, Node<T>>,
    single: Option<Box<Node<T>>>,
    /// Values whose pattern ends in `>` at this depth.
    rest: Vec<T>,
    /// Values whose pattern ends exactly here.
    here: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            single: None,
            rest: Vec::new(),
            here: Vec::new(),
        }
    }
}

impl<T> Default for TriggerIndex<T> {
    fn default() -> Self {
        TriggerIndex {
            root: Node::default(),
        }
    }
}

impl<T: Clone> TriggerIndex<T> {
    pub fn insert(&mut self, pattern: &Pattern, value: T) {
        let mut node = &mut self.root;
        for token in pattern.as_str().split('.') {
            match token {
                ">" => {
                    node.rest.push(value);
                    return;
                }
                "*" => node = node.single.get_or_insert_with(Box::default),
                literal => node = node.literal.entry(literal.to_owned()).or_default(),
            }
        }
        node.here.push(value);
    }

    /// Calls `found` once per (pattern, value) pair that matches `event_type`. A value inserted
    /// under two matching patterns is reported twice; callers dedupe.
    pub fn for_each_match<'a>(&'a self, event_type: &str, mut found: impl FnMut(&'a T)) {
        let tokens: Vec<&str> = event_type.split('.').collect();
        Self::walk(&self.root, &tokens, &mut found);
    }

    fn walk<'a>(node: &'a Node<T>, tokens: &[&str], found: &mut impl FnMut(&'a T)) {
        let Some((first, rest)) = tokens.split_first() else {
            node.here.iter().for_each(&mut *found);
            return;
        };
        node.rest.iter().for_each(&mut *found);
        if let Some(child) = node.literal.get(*first) {
            Self::walk(child, rest, found);
        }
        if let Some(child) = &node.single {
            Self::walk(child, rest, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(index: &TriggerIndex<usize>, event_type: &str) -> Vec<usize> {
        let mut out = Vec::new();
        index.for_each_match(event_type, |v| out.push(*v));
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn nats_wildcard_semantics() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("cart.updated").matches("cart.updated"));
        assert!(!p("cart.updated").matches("cart.updated.v2"));
        assert!(p("cart.*").matches("cart.updated"));
        assert!(!p("cart.*").matches("cart"));
        assert!(!p("cart.*").matches("cart.updated.v2"));
        assert!(p("order.>").matches("order.placed.v2"));
        assert!(!p("order.>").matches("order"));
        assert!(p(">").matches("anything.at.all"));
        assert!(p("*.viewed").matches("product.viewed"));
    }

    #[test]
    fn invalid_patterns_are_refused_with_a_reason() {
        for bad in ["", "cart..x", "cart.>.x", "cart*", "car t", "a.b>"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn index_finds_exactly_the_matching_rules() {
        let mut index = TriggerIndex::default();
        for (value, pattern) in ["cart.updated", "cart.*", "order.>", ">", "*.viewed"]
            .iter()
            .enumerate()
        {
            index.insert(&Pattern::parse(pattern).unwrap(), value);
        }
        assert_eq!(matches(&index, "cart.updated"), vec![0, 1, 3]);
        assert_eq!(matches(&index, "order.placed"), vec![2, 3]);
        assert_eq!(matches(&index, "product.viewed"), vec![3, 4]);
        assert_eq!(matches(&index, "cart"), vec![3]);
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_owned)
    }

    fn pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![token(), Just("*".to_owned())], 0..4),
            any::<bool>(),
        )
            .prop_filter_map("non-empty", |(mut tokens, tail)| {
                if tail {
                    tokens.push(">".into());
                }
                (!tokens.is_empty()).then(|| tokens.join("."))
            })
    }

    proptest! {
        #[test]
        fn index_agrees_with_reference_matcher(
            patterns in prop::collection::vec(pattern(), 1..20),
            subject in prop::collection::vec(token(), 1..5),
        ) {
            let subject = subject.join(".");
            let mut index = TriggerIndex::default();
            let parsed: Vec<Pattern> = patterns.iter().map(|p| Pattern::parse(p).unwrap()).collect();
            for (i, p) in parsed.iter().enumerate() {
                index.insert(p, i);
            }
            let expected: Vec<usize> = parsed.iter().enumerate()
                .filter(|(_, p)| p.matches(&subject)).map(|(i, _)| i).collect();
            prop_assert_eq!(matches(&index, &subject), expected);
        }
    }
}
