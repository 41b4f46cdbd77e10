//! The registry against the catalogue the topology is checked with: every
//! step the catalogue allows in a page stage is one the registry builds,
//! under its name, with what the catalogue says of it; and a process built
//! for some stages has only those.
//!
//! Needs what `./setup` installs in `.pagestream/` (PDFium, the models).
#![allow(clippy::unwrap_used)]

mod support;

use pages::home::Home;
use pages::registry;

#[test]
fn the_catalogue_says_which_stages_read_the_document_as_the_steps_do() {
    let topology = topology::Pipeline::embedded(pages::steps::catalogue()).unwrap();
    let pipeline = registry::build(&topology, &Home::locate(Some(&support::home()))).unwrap();
    for stage in &pipeline.stages {
        let spec = topology.stage(&stage.name).unwrap();
        assert_eq!(spec.reads_document(), stage.needs_document, "stage {}", stage.name);
        let built: Vec<&str> = stage.steps.iter().map(|step| step.name()).collect();
        assert_eq!(built, spec.steps(), "stage {}", stage.name);
    }
    assert!(topology.stage("render").unwrap().reads_document());
}

#[test]
fn every_catalogued_page_step_has_a_builder_and_no_other_does() {
    let catalogue = pages::steps::catalogue();
    assert_eq!(catalogue.steps.len(), pages::steps::BUILTIN.len());
    for step in pages::steps::BUILTIN {
        let page_step = topology::catalogue::is_page_stage(step.info.stage);
        assert_eq!(step.build.is_some(), page_step, "step {}", step.info.name);
        let names = catalogue.step_names(step.info.stage);
        assert!(names.contains(&step.info.name), "{} in {names:?}", step.info.name);
        assert!(step.info.after.iter().all(|before| names.contains(before)));
        (step.info.settings)(&toml::Table::new()).expect("the defaults are valid settings");
    }
    let kinds: Vec<&str> = pages::steps::RULE_KINDS.iter().map(|kind| kind.info.name).collect();
    assert_eq!(catalogue.rule_kind_names(), kinds);
}

#[test]
fn a_pool_builds_only_the_stages_it_serves() {
    let topology = topology::Pipeline::embedded(pages::steps::catalogue()).unwrap();
    let home = Home::locate(Some(&support::home()));
    let names = |pipeline: &pages::pipeline::Pipeline| -> Vec<String> {
        pipeline.stages.iter().map(|s| s.name.clone()).collect()
    };
    let ocr = registry::build_stages(&topology, &home, |s| s == "ocr").unwrap();
    assert_eq!(names(&ocr), ["ocr"]);
    assert_eq!(ocr.stages[0].steps.len(), 3);
    let document_level =
        registry::build_stages(&topology, &home, |s| s == "split" || s == "assemble").unwrap();
    assert!(document_level.stages.is_empty());
    let all = registry::build(&topology, &home).unwrap();
    assert_eq!(names(&all), ["render", "preprocess", "layout", "ocr", "enrich"]);
}
