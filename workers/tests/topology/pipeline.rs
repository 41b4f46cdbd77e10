//! The embedded pipeline and the shape of a loaded [`Pipeline`].

use std::time::Duration;

use pages::steps::{BUILTIN, MODEL_DET};
use topology::catalogue::{self, ENTRY_STAGE, EXIT_STAGE};
use topology::{Limits, Pipeline, Retention, TopologyError};

use crate::steps;

#[test]
fn the_embedded_pipeline_runs_every_stage_and_step_in_catalogue_order() {
    let pipeline = Pipeline::embedded(steps()).unwrap();
    let stages: Vec<&str> = pipeline.stages().iter().map(|stage| stage.name()).collect();
    assert_eq!(stages, catalogue::stage_names());
    for stage in pipeline.stages() {
        assert_eq!(stage.steps(), steps().step_names(stage.name()), "stage {}", stage.name());
        assert_eq!(stage.subject(), stage.name());
    }
    assert_eq!(pipeline.stages().first().unwrap().name(), ENTRY_STAGE);
    assert!(pipeline.stage(EXIT_STAGE).unwrap().next().is_empty());
    assert_eq!(pipeline.stage("ocr").unwrap().models(), ["det", "cls", "rec"]);
}

#[test]
fn the_embedded_pipeline_defines_the_five_models() {
    let pipeline = Pipeline::embedded(steps()).unwrap();
    let names: Vec<&str> = pipeline.models().keys().map(String::as_str).collect();
    assert_eq!(names, ["cls", "det", "layout", "orientation", "rec"]);
    let det = pipeline.model(MODEL_DET).unwrap();
    assert_eq!(det.path.to_str(), Some("PP-OCRv6_det_small.int8.onnx"));
    assert_eq!(det.intra_threads, 1);
}

#[test]
fn the_embedded_limits_are_the_defaults_and_every_step_table_is_a_built_in_step() {
    let pipeline = Pipeline::embedded(steps()).unwrap();
    assert_eq!(pipeline.limits(), &Limits::default());
    for (name, table) in pipeline.step_tables() {
        let step = BUILTIN.iter().find(|step| step.info.name == name);
        assert!(step.is_some() && table.kind.is_none(), "{name}");
    }
    let detect = pipeline.step_table("detect_text").unwrap();
    assert_eq!(detect.settings["db"]["thresh"].as_float(), Some(0.3));
}

#[test]
fn a_file_with_the_old_settings_sections_says_where_each_key_went() {
    let text = format!(
        "{}\n[ocr]\ndet_thresh = 0.4\nrec_batch = 2\n\n[render]\ndpi = 200\n[enrich]\n",
        include_str!("minimal.toml")
    );
    let errors = Pipeline::from_str(&text, "old.toml", steps()).unwrap_err();
    let moved: Vec<(String, String)> = errors
        .iter()
        .map(|error| match error {
            TopologyError::Moved { key, to, .. } => (key.clone(), to.clone()),
            other => panic!("{other}"),
        })
        .collect();
    let pairs: Vec<(&str, &str)> = moved.iter().map(|(k, t)| (k.as_str(), t.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("ocr.det_thresh", "steps.detect_text.db.thresh"),
            ("ocr.rec_batch", "steps.recognize_text.batch_size"),
            ("render.dpi", "steps.rasterize.dpi"),
            ("enrich", "steps.<step>"),
        ]
    );
    assert!(errors[0].to_string().contains("write it as `steps.detect_text.db.thresh`"));
}

#[test]
fn durations_and_stream_settings_are_typed() {
    let pipeline = Pipeline::embedded(steps()).unwrap();
    let ocr = pipeline.stage("ocr").unwrap();
    assert_eq!(ocr.consumer().ack_wait, Duration::from_secs(60));
    assert_eq!(ocr.consumer().backoff.len(), 3);
    assert!(ocr.consumer().backoff.len() < ocr.consumer().max_deliver as usize);
    assert_eq!(ocr.scaling().cooldown, Duration::from_secs(300));
    assert_eq!(pipeline.streams().work.retention, Retention::Workqueue);
    assert_eq!(pipeline.streams().results.max_age, Duration::from_secs(7 * 24 * 3600));
}

#[test]
fn sections_left_out_take_their_defaults() {
    let pipeline =
        Pipeline::from_str(include_str!("minimal.toml"), "minimal.toml", steps()).unwrap();
    assert!(pipeline.step_tables().is_empty());
    let split = pipeline.stage("split").unwrap();
    assert_eq!(split.concurrency(), 1);
    assert_eq!(split.consumer(), &topology::ConsumerSettings::default());
    assert_eq!(split.scaling(), &topology::ScalingPolicy::default());
    assert!(pipeline.models().is_empty());
    assert!(pipeline.tenants().is_empty());
    assert_eq!(pipeline.webhooks(), &topology::WebhookSettings::default());
}

#[test]
fn without_declared_tenants_every_tenant_is_accepted() {
    let pipeline = Pipeline::embedded(steps()).unwrap();
    assert!(pipeline.tenants().is_empty());
    assert!(pipeline.accepts_tenant("default") && pipeline.accepts_tenant("acme"));
}

#[test]
fn declared_tenants_are_the_only_ones_accepted_and_carry_their_webhook() {
    let text = format!(
        "{}\n[tenants.acme]\nwebhook = {{ url = \"https://hooks.example.com/in\", \
         secret_env = \"ACME_WEBHOOK_SECRET\" }}\n\n[tenants.globex]\n\n\
         [webhooks]\ntimeout = \"3s\"\nconsumer = {{ max_deliver = 3, backoff = [\"1s\"] }}\n",
        include_str!("minimal.toml")
    );
    let pipeline = Pipeline::from_str(&text, "tenants.toml", steps()).unwrap();
    assert!(pipeline.accepts_tenant("acme") && pipeline.accepts_tenant("globex"));
    assert!(!pipeline.accepts_tenant("initech"));
    let webhook = pipeline.tenants()["acme"].webhook.as_ref().unwrap();
    assert_eq!(webhook.url, "https://hooks.example.com/in");
    assert_eq!(webhook.secret_env, "ACME_WEBHOOK_SECRET");
    assert!(pipeline.tenants()["globex"].webhook.is_none());
    assert_eq!(pipeline.webhooks().timeout, Duration::from_secs(3));
    assert_eq!(pipeline.webhooks().consumer.max_deliver, 3);
    assert_eq!(pipeline.webhooks().consumer.backoff, [Duration::from_secs(1)]);
}

#[test]
fn stages_come_in_topological_order_when_they_branch() {
    let minimal = include_str!("minimal.toml");
    // split fans out to render and enrich; render also feeds enrich
    let text = minimal.replace(
        "next = \"assemble\"",
        "next = [\"enrich\", \"render\"]\n\n[stages.render]\nsteps = [\"rasterize\"]\nnext = \"enrich\"\n\n\
         [stages.enrich]\nsteps = [\"detect_language\"]\nnext = \"assemble\"",
    );
    let pipeline = Pipeline::from_str(&text, "branching.toml", steps()).unwrap();
    let stages: Vec<&str> = pipeline.stages().iter().map(|stage| stage.name()).collect();
    assert_eq!(stages, ["split", "render", "enrich", "assemble"]);
    assert_eq!(pipeline.stage("split").unwrap().next(), ["enrich", "render"]);
}

#[test]
fn the_check_report_of_the_embedded_file_passes_without_models() {
    let report = topology::check(None, None, steps());
    assert!(report.is_ok(), "{report}");
    assert!(report.errors().is_empty());
    assert_eq!(report.pipeline().unwrap().stages().len(), catalogue::STAGES.len());
}

#[test]
fn the_readme_lists_the_steps_of_the_step_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology/README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let begin = "<!-- steps:begin: generated by `pagestream topology steps`, do not edit -->\n";
    let end = "<!-- steps:end -->";
    let (head, rest) = readme.split_once(begin).expect("the begin marker");
    let (listed, tail) = rest.split_once(end).expect("the end marker");
    let generated = pages::steps::reference::markdown();
    if std::env::var_os("PAGESTREAM_UPDATE_README").is_some() {
        std::fs::write(&path, format!("{head}{begin}{generated}{end}{tail}")).unwrap();
        return;
    }
    assert_eq!(
        listed, generated,
        "topology/README.md lists other steps than the step table: \
         PAGESTREAM_UPDATE_README=1 cargo test -p workers --test topology readme"
    );
}
