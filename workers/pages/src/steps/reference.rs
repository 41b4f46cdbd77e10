//! The reference of the steps a topology may use, made from the step table
//! itself: the part of `topology/README.md` between the `steps:begin` and
//! `steps:end` markers is this text (`pagestream topology steps` prints it;
//! a test keeps the README equal to it).

use std::fmt::Write as _;

use super::{BUILTIN, RULE_KINDS};

/// The Markdown reference of every built-in step and rule kind.
pub fn markdown() -> String {
    let mut text = String::from(
        "| stage | step | models | `[steps.<step>]` keys, with their defaults | what it does |\n\
         |---|---|---|---|---|\n",
    );
    for step in BUILTIN {
        let info = &step.info;
        let mut keys = Vec::new();
        flatten("", &(step.defaults)(), &mut keys);
        let keys = if keys.is_empty() { "none".to_owned() } else { keys.join("<br>") };
        let models: Vec<String> = info.models.iter().map(|m| format!("`{m}`")).collect();
        let _ = writeln!(
            text,
            "| {} | `{}` | {} | {keys} | {} |",
            info.stage,
            info.name,
            models.join(", "),
            info.summary
        );
    }
    text.push_str("\n| rule kind | what a step of it does |\n|---|---|\n");
    for kind in RULE_KINDS {
        let _ = writeln!(text, "| `{}` | {} |", kind.info.name, kind.info.summary);
    }
    text
}

/// `key = value` for every leaf of `table`, nested keys dotted.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            // settings are f32: print them as written, not widened (0.9, not 0.8999999761581421)
            toml::Value::Float(float) => out.push(format!("`{key} = {:?}`", *float as f32)),
            value => out.push(format!("`{key} = {value}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reference_names_every_step_with_its_defaults() {
        let text = super::markdown();
        assert!(text.contains("| ocr | `detect_text` | `det` | "), "{text}");
        assert!(text.contains("`db.thresh = 0.3`"), "{text}");
        assert!(text.contains("`max_deg = 5.0`"), "{text}");
        assert!(text.contains("| `extract` |"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("| ")).count(), 17 + 3 + 2);
    }
}
