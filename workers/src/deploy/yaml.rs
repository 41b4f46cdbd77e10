//! A YAML writer for JSON values, enough for Kubernetes objects: block
//! style, keys in the value's order, strings plain only where YAML cannot
//! read them as anything else (otherwise JSON-quoted, which YAML reads as
//! the same string).

use serde_json::Value;

/// `value` as a YAML document (no leading `---`).
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => block(&mut out, value, 0),
        Value::Array(items) if !items.is_empty() => block(&mut out, value, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// A non-empty map or list, one entry per line at `indent`.
fn block(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                out.push_str(&" ".repeat(indent));
                out.push_str(&string(key));
                out.push(':');
                after_key(out, value, indent);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                after_dash(out, item, indent);
            }
        }
        _ => {}
    }
}

fn after_key(out: &mut String, value: &Value, indent: usize) {
    if is_block(value) {
        out.push('\n');
        block(out, value, indent + 2);
    } else {
        out.push(' ');
        out.push_str(&inline(value));
        out.push('\n');
    }
}

/// A list item: a map starts on the dash's line, its other keys aligned
/// under the first.
fn after_dash(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(_) if is_block(value) => {
            let mut item = String::new();
            block(&mut item, value, indent + 2);
            out.push(' ');
            out.push_str(&item[indent + 2..]);
        }
        Value::Array(_) if is_block(value) => {
            out.push('\n');
            block(out, value, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

/// A scalar or an empty collection on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => string(text),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// Plain when it starts with a letter or `/`, holds only letters, digits
/// and `._/-`, and is no word YAML 1.1 reads as a boolean or null.
fn string(text: &str) -> String {
    const WORDS: [&str; 11] =
        ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf"];
    let plain = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !WORDS.contains(&text.to_ascii_lowercase().as_str());
    if plain { text.to_string() } else { Value::String(text.to_string()).to_string() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn writes_nested_maps_and_lists_in_block_style() {
        let value = json!({
            "kind": "Deployment",
            "spec": {
                "replicas": 2,
                "args": ["worker", "--stage", "ocr"],
                "containers": [{"name": "worker", "ports": [{"containerPort": 9464}]}],
                "empty": {},
                "none": [],
            },
        });
        let expected = "\
kind: Deployment
spec:
  args:
    - worker
    - \"--stage\"
    - ocr
  containers:
    - name: worker
      ports:
        - containerPort: 9464
  empty: {}
  none: []
  replicas: 2
";
        assert_eq!(to_string(&value), expected);
    }

    #[test]
    fn quotes_strings_yaml_would_read_otherwise() {
        for (text, written) in [
            ("pagestream-ocr", "pagestream-ocr"),
            ("app.kubernetes.io/name", "app.kubernetes.io/name"),
            ("20", "\"20\""),
            ("500m", "\"500m\""),
            ("true", "\"true\""),
            ("No", "\"No\""),
            ("nats-headless:8222", "\"nats-headless:8222\""),
            ("a # b", "\"a # b\""),
            ("", "\"\""),
            ("line\nbreak", "\"line\\nbreak\""),
        ] {
            assert_eq!(string(text), written, "{text}");
        }
    }
}
