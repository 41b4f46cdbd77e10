//! The embedded pipeline and the shape of a loaded [`Pipeline`].

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use topology::catalogue::{self, ENTRY_STAGE, EXIT_STAGE};
use topology::{
    EnrichSettings, LayoutSettings, Limits, OcrSettings, Pipeline, PreprocessSettings,
    RenderSettings, Retention,
};

#[test]
fn the_embedded_pipeline_runs_every_stage_and_step_in_catalogue_order() {
    let pipeline = Pipeline::embedded().unwrap();
    let stages: Vec<&str> = pipeline.stages().iter().map(|stage| stage.name()).collect();
    assert_eq!(stages, catalogue::stage_names());
    for (stage, spec) in pipeline.stages().iter().zip(catalogue::STAGES) {
        assert_eq!(stage.steps(), spec.step_names(), "stage {}", stage.name());
        assert_eq!(stage.subject(), stage.name());
    }
    assert_eq!(pipeline.stages().first().unwrap().name(), ENTRY_STAGE);
    assert!(pipeline.stage(EXIT_STAGE).unwrap().next().is_empty());
    assert_eq!(pipeline.stage("ocr").unwrap().models(), ["det", "cls", "rec"]);
}

#[test]
fn the_embedded_pipeline_defines_the_five_models() {
    let pipeline = Pipeline::embedded().unwrap();
    let names: Vec<&str> = pipeline.models().keys().map(String::as_str).collect();
    assert_eq!(names, ["cls", "det", "layout", "orientation", "rec"]);
    let det = pipeline.model(catalogue::MODEL_DET).unwrap();
    assert_eq!(det.path.to_str(), Some("PP-OCRv6_det_small.int8.onnx"));
    assert_eq!(det.intra_threads, 1);
}

#[test]
fn the_embedded_settings_are_the_documented_defaults() {
    let pipeline = Pipeline::embedded().unwrap();
    assert_eq!(pipeline.limits(), &Limits::default());
    assert_eq!(pipeline.render(), &RenderSettings::default());
    assert_eq!(pipeline.preprocess(), &PreprocessSettings::default());
    assert_eq!(pipeline.layout(), &LayoutSettings::default());
    assert_eq!(pipeline.ocr(), &OcrSettings::default());
    assert_eq!(pipeline.enrich(), &EnrichSettings::default());
}

#[test]
fn durations_and_stream_settings_are_typed() {
    let pipeline = Pipeline::embedded().unwrap();
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
    let pipeline = Pipeline::from_str(include_str!("minimal.toml"), "minimal.toml").unwrap();
    assert_eq!(pipeline.ocr(), &OcrSettings::default());
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
    let pipeline = Pipeline::embedded().unwrap();
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
    let pipeline = Pipeline::from_str(&text, "tenants.toml").unwrap();
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
    let pipeline = Pipeline::from_str(&text, "branching.toml").unwrap();
    let stages: Vec<&str> = pipeline.stages().iter().map(|stage| stage.name()).collect();
    assert_eq!(stages, ["split", "render", "enrich", "assemble"]);
    assert_eq!(pipeline.stage("split").unwrap().next(), ["enrich", "render"]);
}

#[test]
fn the_check_report_of_the_embedded_file_passes_without_models() {
    let report = topology::check(None, None);
    assert!(report.is_ok(), "{report}");
    assert!(report.errors().is_empty());
    assert_eq!(report.pipeline().unwrap().stages().len(), catalogue::STAGES.len());
}
