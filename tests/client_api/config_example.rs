//! config/palabre.example.toml against the code: the file as shipped is the defaults; with
//! every `# key = value` line and `# [section]` header uncommented it still parses (a misspelt
//! or removed key is refused by `deny_unknown_fields`) and each key not marked `# example`
//! shows its default; and every field of every configuration struct is documented in its
//! section. The file is read at run time; no server is started.

use std::collections::BTreeMap;
use std::path::PathBuf;

use palabre::config::{
    AccountValidityConfig, Config, EmailRule, EmailTarget, FederationConfig, ServerNoticesConfig,
    TchapConfig, TlsConfig, TrustedKeyServer,
};
use serde_json::Value;

/// The end of a commented key line whose value is an example, not the default.
const EXAMPLE_MARK: &str = "  # example";

fn example_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/palabre.example.toml");
    std::fs::read_to_string(path).expect("config/palabre.example.toml")
}

/// A commented key line, uncommented.
struct Shown {
    line: usize,
    /// The section path and the key.
    path: Vec<String>,
    example: bool,
    /// Inside a `[[array]]` block.
    in_array: bool,
}

/// `[a.b]` or `[[a.b]]` (without a leading `# `): the section path and whether it is an array.
fn header(line: &str) -> Option<(Vec<String>, bool)> {
    let line = line.trim_end();
    let (inner, array) = match line.strip_prefix("[[") {
        Some(rest) => (rest.strip_suffix("]]")?, true),
        None => (line.strip_prefix('[')?.strip_suffix(']')?, false),
    };
    let ok = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    ok.then(|| (inner.split('.').map(str::to_owned).collect(), array))
}

/// `key = value` (without a leading `# `): the key and the value.
fn key_line(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(" = ")?;
    let ok = key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then_some((key, value))
}

/// Open brackets and braces minus closed ones, outside strings.
fn depth(text: &str) -> i32 {
    let (mut depth, mut quote, mut escaped) = (0, None, false);
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

/// Uncomments every `# key = value` line (and the `# ` continuation lines of a value spanning
/// several) and every `# [section]` / `# [[array]]` header.
fn uncomment(text: &str) -> Result<(String, Vec<Shown>), String> {
    let mut out = Vec::new();
    let mut shown = Vec::new();
    let (mut section, mut in_array, mut open) = (Vec::new(), false, 0);
    for (i, line) in text.lines().enumerate() {
        if open > 0 {
            let rest = line
                .strip_prefix("# ")
                .ok_or(format!("line {}: a commented value is not closed", i + 1))?;
            open += depth(rest);
            out.push(rest.to_owned());
            continue;
        }
        let commented = line.strip_prefix("# ");
        if let Some((path, array)) = header(commented.unwrap_or(line)) {
            (section, in_array) = (path, array);
            out.push(commented.unwrap_or(line).to_owned());
            continue;
        }
        if let Some((key, value)) = commented.and_then(key_line) {
            let example = value.ends_with(EXAMPLE_MARK);
            open = depth(value.strip_suffix(EXAMPLE_MARK).unwrap_or(value));
            let mut path = section.clone();
            path.push(key.to_owned());
            shown.push(Shown {
                line: i + 1,
                path,
                example,
                in_array,
            });
            out.push(commented.unwrap_or(line).to_owned());
            continue;
        }
        out.push(line.to_owned());
    }
    if open > 0 {
        return Err("the last commented value is not closed".into());
    }
    Ok((out.join("\n"), shown))
}

/// The defaults, with every optional section and list of sections present (each with its own
/// defaults where it has some), so that the fields of each are walked. A field added to one of
/// these structs shows here; an `Option` section added to one must be made present here.
fn reference() -> Config {
    let defaults = Config::default();
    Config {
        tls: Some(TlsConfig {
            listen: String::new(),
            certificate: PathBuf::new(),
            private_key: PathBuf::new(),
        }),
        server_notices: Some(ServerNoticesConfig::default()),
        federation: FederationConfig {
            trusted_key_servers: vec![TrustedKeyServer {
                server_name: String::new(),
                verify_keys: BTreeMap::new(),
            }],
            ..defaults.federation.clone()
        },
        tchap: Some(TchapConfig {
            email_rules: vec![EmailRule {
                address: Some(String::new()),
                pattern: Some(String::new()),
                server: String::new(),
                requires_invite: false,
            }],
            catch_all: Some(EmailTarget {
                server: String::new(),
                requires_invite: false,
            }),
            account_validity: Some(AccountValidityConfig::default()),
            ..TchapConfig::default()
        }),
        ..defaults
    }
}

fn json(cfg: &Config) -> Value {
    serde_json::to_value(cfg).expect("config serializes")
}

/// Leaf key paths of a serialized configuration: nested objects are sections, the elements of
/// a list of objects are blocks of the list's section; empty objects (maps) and anything else
/// are keys.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let Some(obj) = v.as_object() else { return };
    for (k, v) in obj {
        match v {
            Value::Object(o) if !o.is_empty() => leaves(v, &join(k), out),
            Value::Array(a) if a.first().is_some_and(Value::is_object) => {
                for e in a {
                    leaves(e, &join(k), out);
                }
            }
            _ => out.push((join(k), v.clone())),
        }
    }
}

/// Every key path written in a TOML document, with whether its value is a table (or a list of
/// tables).
fn written(v: &toml::Value, prefix: &str, out: &mut BTreeMap<String, bool>) {
    let Some(table) = v.as_table() else { return };
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let tables: Vec<&toml::Value> = match v {
            toml::Value::Table(_) => vec![v],
            toml::Value::Array(a) => a.iter().filter(|e| e.is_table()).collect(),
            _ => vec![],
        };
        out.insert(path.clone(), !tables.is_empty());
        for t in tables {
            written(t, &path, out);
        }
    }
}

/// Paths where two serialized configurations differ.
fn differences(a: &Value, b: &Value, prefix: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = Value::Null;
                let path = format!("{prefix}.{k}");
                differences(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    &path,
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{}: {a} instead of {b}", &prefix[1..])),
        _ => {}
    }
}

/// The file as shipped: it parses, passes the start-up checks, and is exactly the defaults.
fn check_shipped(text: &str) -> Vec<String> {
    let cfg: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => return vec![format!("the file does not parse: {e}")],
    };
    if let Err(e) = palabre::services::check_config(&cfg) {
        return vec![format!("the file fails the start-up checks: {e}")];
    }
    let mut out = Vec::new();
    differences(&json(&cfg), &json(&Config::default()), "", &mut out);
    out
}

/// With every key and header uncommented: it parses, passes the start-up checks, and each key
/// not marked `# example` has its default value.
fn check_uncommented(text: &str) -> Vec<String> {
    let (text, shown) = match uncomment(text) {
        Ok(u) => u,
        Err(e) => return vec![e],
    };
    let cfg: Config = match toml::from_str(&text) {
        Ok(c) => c,
        Err(e) => return vec![format!("uncommented, the file does not parse: {e}")],
    };
    if let Err(e) = palabre::services::check_config(&cfg) {
        return vec![format!(
            "uncommented, the file fails the start-up checks: {e}"
        )];
    }
    let (got, want) = (json(&cfg), json(&reference()));
    let at = |v: &Value, path: &[String]| path.iter().try_fold(v, |v, k| v.get(k)).cloned();
    let mut out = Vec::new();
    for s in shown.iter().filter(|s| !s.example) {
        let key = s.path.join(".");
        if s.in_array {
            out.push(format!(
                "line {}: {key} is in a [[list]] block: mark it{EXAMPLE_MARK}",
                s.line
            ));
            continue;
        }
        let (g, w) = (at(&got, &s.path), at(&want, &s.path));
        if g != w {
            out.push(format!(
                "line {}: {key} shows {} but the default is {} (fix it, or mark it{EXAMPLE_MARK})",
                s.line,
                g.unwrap_or_default(),
                w.unwrap_or_default()
            ));
        }
    }
    out
}

/// Every field of every configuration struct is written (commented or not) in its section.
fn check_complete(text: &str) -> Vec<String> {
    let doc: toml::Value = match uncomment(text).map(|(t, _)| toml::from_str::<toml::Value>(&t)) {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return vec![format!("uncommented, the file does not parse: {e}")],
        Err(e) => return vec![e],
    };
    let mut documented = BTreeMap::new();
    written(&doc, "", &mut documented);
    let mut fields = Vec::new();
    leaves(&json(&reference()), "", &mut fields);
    let mut out = Vec::new();
    for (path, default) in fields {
        match documented.get(&path) {
            None => out.push(format!("{path} is not documented")),
            // A section documented with its fields, while the reference leaves it absent or
            // empty: its fields would go unchecked.
            Some(true) if default.is_null() || default == serde_json::json!([]) => out.push(
                format!("{path} is a section: make it present in reference() to check its fields"),
            ),
            Some(_) => {}
        }
    }
    out
}

#[test]
fn config_example_as_shipped_is_the_defaults() {
    let problems = check_shipped(&example_text());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn config_example_uncommented_shows_the_defaults() {
    let problems = check_uncommented(&example_text());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn config_example_documents_every_key() {
    let text = example_text();
    let problems = check_complete(&text);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The walk reaches into the optional sections and lists of sections.
    let mut fields = Vec::new();
    leaves(&json(&reference()), "", &mut fields);
    for path in [
        "tls.private_key",
        "server_notices.room_name",
        "federation.trusted_key_servers.verify_keys",
        "tchap.email_rules.pattern",
        "tchap.catch_all.requires_invite",
        "tchap.account_validity.grace_days",
        "rate_limits.email_invite.burst",
        "media.url_preview.timeout_ms",
    ] {
        assert!(fields.iter().any(|(p, _)| p == path), "{path} not walked");
    }
}

/// The checks above fail on the drifts they are for.
#[test]
fn config_example_drift_is_caught() {
    let text = example_text();
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from:?} not in the example");
        text.replacen(from, to, 1)
    };
    // A key removed from the file (or added to a struct and not documented).
    let removed = edit("# iterations = 2\n", "");
    assert!(check_complete(&removed)
        .iter()
        .any(|p| p.contains("password_hashing.iterations is not documented")));
    // A key of an optional section removed.
    let removed = edit("# grace_days = 30\n", "");
    assert!(check_complete(&removed)
        .iter()
        .any(|p| p.contains("tchap.account_validity.grace_days is not documented")));
    // A misspelt (or removed from the code) key.
    let misspelt = edit("# iterations = 2", "# iteration = 2");
    assert!(!check_uncommented(&misspelt).is_empty());
    assert!(!check_complete(&misspelt).is_empty());
    // A wrong default, commented or not.
    let wrong = edit("# iterations = 2", "# iterations = 3");
    assert!(check_uncommented(&wrong)
        .iter()
        .any(|p| p.contains("password_hashing.iterations shows 3 but the default is 2")));
    let wrong = edit("# pull_interval_secs = 300", "# pull_interval_secs = 60");
    assert!(!check_uncommented(&wrong).is_empty());
    let active = edit("# iterations = 2", "iterations = 3");
    assert!(!check_shipped(&active).is_empty());
    // A key in the wrong section.
    let moved = edit("# timeout_ms = 10000\n", "").replacen(
        "# max_upload_bytes = 104857600",
        "# max_upload_bytes = 104857600\n# timeout_ms = 10000",
        1,
    );
    assert!(!check_uncommented(&moved).is_empty());
}
