//! The registry against the topology's catalogue: what the catalogue says
//! of a step (here: whether it reads the document bytes) is what the built
//! step does, and a process built for some stages has only those.
//!
//! Needs what `./setup` installs in `.pagestream/` (PDFium, the models).
#![allow(clippy::unwrap_used)]

mod support;

use workers::home::Home;
use workers::registry;

#[test]
fn the_catalogue_says_which_stages_read_the_document_as_the_steps_do() {
    let topology = topology::Pipeline::embedded().unwrap();
    let pipeline = registry::build(&topology, &Home::locate(Some(&support::home()))).unwrap();
    for stage in &pipeline.stages {
        let spec = topology.stage(&stage.name).unwrap();
        assert_eq!(spec.reads_document(), stage.needs_document(), "stage {}", stage.name);
    }
    assert!(topology.stage("render").unwrap().reads_document());
}

#[test]
fn a_pool_builds_only_the_stages_it_serves() {
    let topology = topology::Pipeline::embedded().unwrap();
    let home = Home::locate(Some(&support::home()));
    let names = |pipeline: &workers::pipeline::Pipeline| -> Vec<String> {
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
