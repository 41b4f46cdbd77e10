//! Rule steps configured in a topology file, run by the real pipeline (the
//! real models, PDFium) on the sample documents: an extractor by pattern
//! with the IBAN checksum, one by word list, a lookup through a table file
//! next to the topology, and flags that mark pages and set their class.
//!
//! Needs what `./setup` installs in `.pagestream/`.

#![allow(clippy::unwrap_used)]

mod support;

use pages::home::Home;
use runtime::embedded::{self, InputDocument, Options};
use schemas::{DocumentResult, DocumentStatus, PageResult};

const RULES: &str = r#"
[steps.bank_account]
kind = "extract"
pattern = '(?i)iban:?\s*(?P<value>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){4}(?: ?[A-Z0-9]{1,4})?)'
normalize = ["remove_spaces", "uppercase"]
validator = "iban"

[steps.seller]
kind = "extract"
words = ["Nordlicht Office Supplies GmbH", "Globex Corporation"]

[steps.bank_name]
kind = "lookup"
field = "bank_account"
table = "banks.csv"
output = "bank"

[steps.invoice_checked]
kind = "flag"
if_class = "invoice"
if_field = "bank"
code = "bank_known"
level = "info"
message = "the invoice names a bank we know"

[steps.letters_to_review]
kind = "flag"
if_text = '(?i)\bdear\b'
unless_field = "iban"
set_class = "correspondence"
"#;

/// The built-in topology with the rules above listed after `enrich`'s own
/// steps, written to `dir` with the lookup's table beside it.
fn topology_in(dir: &std::path::Path) -> topology::Pipeline {
    std::fs::write(dir.join("banks.csv"), "# iban,bank\nDE89370400440532013000,Commerzbank Köln\n")
        .unwrap();
    let enrich = r#"steps = ["order_reading", "detect_language", "extract_fields", "build_tables", "classify_page""#;
    let text = topology::EMBEDDED.replacen(
        enrich,
        &format!(
            r#"{enrich}, "bank_account", "seller", "bank_name", "invoice_checked", "letters_to_review""#
        ),
        1,
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, format!("{text}\n{RULES}")).unwrap();
    topology::Pipeline::load(&path, pages::steps::catalogue()).unwrap()
}

fn analyse(topology: &topology::Pipeline, sample: &str) -> DocumentResult {
    let home = Home::locate(Some(&support::home()));
    let pipeline = pages::registry::build(topology, &home).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples").join(sample);
    let document = InputDocument { name: sample.into(), bytes: std::fs::read(path).unwrap() };
    let mut results = Vec::new();
    embedded::run(
        &pipeline,
        [document].into_iter(),
        &Options::default(),
        |_| {},
        |r| results.push(r),
    );
    let result = results.pop().unwrap();
    assert_eq!(result.status, DocumentStatus::Complete, "{:?}", result.failures);
    result
}

fn named<'p>(page: &'p PageResult, name: &str) -> Vec<&'p str> {
    page.fields.iter().filter(|f| f.name() == name).map(|f| f.value.as_str()).collect()
}

#[test]
fn rule_steps_extract_look_up_and_flag_on_real_documents() {
    let dir = tempfile::tempdir().unwrap();
    let topology = topology_in(dir.path());

    let invoice = analyse(&topology, "invoice.pdf");
    let page = &invoice.pages[0];
    assert_eq!(named(page, "bank_account"), ["DE89 3704 0044 0532 0130 00"]);
    let account = page.fields.iter().find(|f| f.name() == "bank_account").unwrap();
    assert_eq!(account.normalized.as_deref(), Some("DE89370400440532013000"));
    assert!(account.bbox.is_some() && account.line.is_some());
    // every occurrence of a listed name, and nothing else
    let seller = "Nordlicht Office Supplies GmbH";
    let occurrences: usize = page.lines.iter().map(|line| line.text.matches(seller).count()).sum();
    assert!(occurrences >= 1);
    assert_eq!(named(page, "seller"), vec![seller; occurrences]);
    assert_eq!(named(page, "bank"), ["Commerzbank Köln"]);
    let flags: Vec<&str> = page.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert!(flags.contains(&"bank_known"), "{flags:?}");
    assert_eq!(page.class.as_deref(), Some("invoice"));
    // each rule step is timed like a built-in step, in the stage that lists it
    for rule in ["bank_account", "seller", "bank_name", "invoice_checked", "letters_to_review"] {
        let timings: Vec<_> = page.timings.iter().filter(|t| t.step == rule).collect();
        assert_eq!(timings.len(), 1, "{rule}");
        assert_eq!(timings[0].stage, "enrich");
    }

    let letter = analyse(&topology, "scan-letter.png");
    let page = &letter.pages[0];
    assert_eq!(page.class.as_deref(), Some("correspondence"), "{:?}", page.diagnostics);
    assert_eq!(letter.class.as_deref(), Some("correspondence"));
    assert!(named(page, "bank").is_empty());
    assert!(!page.diagnostics.iter().any(|d| d.code == "bank_known"));
}

#[test]
fn topology_check_reads_the_rule_steps_table_files() {
    let dir = tempfile::tempdir().unwrap();
    topology_in(dir.path());
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pagestream"))
            .args(["topology", "check", "--no-models"])
            .arg(dir.path().join("pipeline.toml"))
            .output()
            .unwrap()
    };
    let passed = check();
    assert!(passed.status.success(), "{}", String::from_utf8_lossy(&passed.stdout));
    std::fs::write(dir.path().join("banks.csv"), "DE89370400440532013000 Commerzbank\n").unwrap();
    let failed = check();
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("step `bank_name`:")
            && stdout.contains("banks.csv:1: expected `key,value`"),
        "{stdout}"
    );
}

#[test]
fn a_rule_step_whose_table_file_is_missing_stops_the_build_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let topology = topology_in(dir.path());
    std::fs::remove_file(dir.path().join("banks.csv")).unwrap();
    let home = Home::locate(Some(&support::home()));
    let error = pages::registry::build(&topology, &home).unwrap_err().to_string();
    assert!(error.starts_with("step `bank_name`: cannot read table file"), "{error}");
}
