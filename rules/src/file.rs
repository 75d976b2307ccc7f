//! Rules as files: a TOML rule (`<id>.toml`, the fields of [`RuleSpec`]) or a bare Rhai script
//! (`<id>.rhai`, triggered by every event type). Used by `nudge rule test` and the examples.

use crate::rule::{RuleError, RuleSpec, validate_rule_id};

/// Parses a rule file; the rule id is the file stem.
pub fn parse_rule_file(file_name: &str, text: &str) -> Result<(String, RuleSpec), RuleError> {
    let (stem, extension) = file_name
        .rsplit_once('.')
        .ok_or_else(|| RuleError::invalid("file", "a rule file ends in .toml or .rhai"))?;
    let id = stem.rsplit('/').next().unwrap_or(stem).to_owned();
    validate_rule_id(&id)?;
    let spec = match extension {
        "toml" => toml::from_str::<RuleSpec>(text)
            .map_err(|e| RuleError::invalid("file", format!("{file_name}: {}", e.message())))?,
        "rhai" => RuleSpec::new(id.clone(), &[">"], text),
        other => {
            return Err(RuleError::invalid(
                "file",
                format!("unknown rule file type .{other} (use .toml or .rhai)"),
            ));
        }
    };
    Ok((id, spec))
}

/// The example rules shipped with nudge and loaded by `nudge up`: (file name, contents).
pub const EXAMPLES: &[(&str, &str)] = &[
    ("welcome.toml", include_str!("../examples/welcome.toml")),
    (
        "big-cart-banner.toml",
        include_str!("../examples/big-cart-banner.toml"),
    ),
    (
        "order-thanks.toml",
        include_str!("../examples/order-thanks.toml"),
    ),
];

/// Rule templates to start from (`rules/templates/`): (file name, contents).
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "abandoned-cart.toml",
        include_str!("../templates/abandoned-cart.toml"),
    ),
    (
        "browse-abandonment.toml",
        include_str!("../templates/browse-abandonment.toml"),
    ),
    (
        "price-drop.toml",
        include_str!("../templates/price-drop.toml"),
    ),
    ("win-back.toml", include_str!("../templates/win-back.toml")),
    (
        "welcome-series.toml",
        include_str!("../templates/welcome-series.toml"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Limits, Sandbox};

    #[test]
    fn every_example_parses_and_compiles() {
        let sandbox = Sandbox::new(Limits::default());
        for (name, text) in EXAMPLES {
            let (id, spec) = parse_rule_file(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(name.starts_with(&id));
            spec.validate().unwrap();
            sandbox
                .compile(&spec.script)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn bare_scripts_trigger_on_everything() {
        let (id, spec) = parse_rule_file("rules/x.rhai", "push(#{title: \"hi\"})").unwrap();
        assert_eq!(id, "x");
        assert_eq!(spec.triggers, vec![">"]);
        assert!(parse_rule_file("x.txt", "").is_err());
    }
}
