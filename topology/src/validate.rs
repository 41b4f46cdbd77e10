//! Semantic checks of a parsed pipeline file: names, values, subjects,
//! models and the stage graph. Every problem is collected, not just the first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::catalogue::{self, ENTRY_STAGE, EXIT_STAGE};
use crate::error::TopologyError;
use crate::pipeline::{File, Stage};
use crate::settings::{ConsumerSettings, Resources, ScalingPolicy, StreamSettings};
use crate::source::{KeyPath, Source, key_path};

/// Checks `file`; on success returns the stage names in topological order.
pub(crate) fn check(file: &File, source: &Source<'_>) -> Result<Vec<String>, Vec<TopologyError>> {
    let mut checker = Checker { source, errors: Vec::new() };
    checker.settings(file);
    checker.models(file);
    checker.streams(file);
    checker.tenants(file);
    let stages = checker.stages(file);
    checker.graph(&stages);
    if checker.errors.is_empty() {
        return Ok(topological_order(&stages));
    }
    let mut errors = checker.errors;
    errors.sort_by(|a, b| a.location().cmp(&b.location()));
    Err(errors)
}

/// The known stages of a file, in catalogue order.
type Stages<'f> = Vec<&'f Stage>;

struct Checker<'s, 'i> {
    source: &'s Source<'i>,
    errors: Vec<TopologyError>,
}

impl Checker<'_, '_> {
    fn invalid(&mut self, key: KeyPath, reason: impl Into<String>) {
        let at = self.source.at(&key);
        self.errors.push(TopologyError::InvalidValue {
            at,
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    fn at_least_one(&mut self, key: KeyPath, value: u64) {
        if value == 0 {
            self.invalid(key, "must be at least 1");
        }
    }

    fn nonzero_duration(&mut self, key: KeyPath, value: Duration) {
        if value.is_zero() {
            self.invalid(key, "must be longer than zero");
        }
    }

    fn fraction(&mut self, key: KeyPath, value: f32) {
        if !(0.0..=1.0).contains(&value) {
            self.invalid(key, format!("{value} is not between 0 and 1"));
        }
    }

    fn positive(&mut self, key: KeyPath, value: f32) {
        if !(value.is_finite() && value > 0.0) {
            self.invalid(key, format!("{value} is not a positive number"));
        }
    }

    fn settings(&mut self, file: &File) {
        let limits = &file.limits;
        self.at_least_one(key_path!["limits", "max_document_bytes"], limits.max_document_bytes);
        self.at_least_one(key_path!["limits", "max_pages"], limits.max_pages.into());
        self.at_least_one(key_path!["limits", "max_page_pixels"], limits.max_page_pixels);
        self.nonzero_duration(key_path!["limits", "step_timeout"], limits.step_timeout);

        self.at_least_one(key_path!["render", "dpi"], file.render.dpi.into());
        self.at_least_one(key_path!["render", "max_side_px"], file.render.max_side_px.into());

        let preprocess = &file.preprocess;
        self.fraction(
            key_path!["preprocess", "orientation_min_confidence"],
            preprocess.orientation_min_confidence,
        );
        if !(0.0..=45.0).contains(&preprocess.deskew_max_deg) {
            self.invalid(
                key_path!["preprocess", "deskew_max_deg"],
                "must be between 0 and 45 degrees",
            );
        }

        let layout = &file.layout;
        self.fraction(key_path!["layout", "score_threshold"], layout.score_threshold);
        self.fraction(key_path!["layout", "nms_iou"], layout.nms_iou);
        self.at_least_one(key_path!["layout", "max_regions"], layout.max_regions.into());

        let ocr = &file.ocr;
        self.at_least_one(key_path!["ocr", "det_limit_side"], ocr.det_limit_side.into());
        self.at_least_one(key_path!["ocr", "det_max_side"], ocr.det_max_side.into());
        self.fraction(key_path!["ocr", "det_thresh"], ocr.det_thresh);
        self.fraction(key_path!["ocr", "box_thresh"], ocr.box_thresh);
        self.positive(key_path!["ocr", "unclip_ratio"], ocr.unclip_ratio);
        self.at_least_one(key_path!["ocr", "max_candidates"], ocr.max_candidates.into());
        self.fraction(key_path!["ocr", "cls_thresh"], ocr.cls_thresh);
        self.fraction(key_path!["ocr", "rec_score_thresh"], ocr.rec_score_thresh);
        self.at_least_one(key_path!["ocr", "rec_batch"], ocr.rec_batch.into());

        self.fraction(
            key_path!["enrich", "min_language_confidence"],
            file.enrich.min_language_confidence,
        );
    }

    fn models(&mut self, file: &File) {
        for (name, model) in &file.models {
            let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
            if model.sha256.len() != 64 || !model.sha256.chars().all(is_hex) {
                self.invalid(
                    key_path!["models", name, "sha256"],
                    "expected 64 lowercase hex digits",
                );
            }
            if model.path.as_os_str().is_empty() || model.path.is_absolute() {
                self.invalid(
                    key_path!["models", name, "path"],
                    "expected a file name relative to the model directory",
                );
            }
            self.at_least_one(
                key_path!["models", name, "intra_threads"],
                model.intra_threads.into(),
            );
        }
    }

    fn tenants(&mut self, file: &File) {
        for (name, tenant) in &file.tenants {
            if let Err(error) = schemas::subjects::validate_tenant(name) {
                self.invalid(key_path!["tenants", name], error.to_string());
            }
            let Some(webhook) = &tenant.webhook else { continue };
            let key = key_path!["tenants", name, "webhook"];
            let url = webhook.url.as_str();
            let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
                self.invalid(key.key("url"), "expected an http:// or https:// URL with a host");
            }
            let env_name = webhook.secret_env.as_str();
            let well_formed = !env_name.is_empty()
                && !env_name.starts_with(|c: char| c.is_ascii_digit())
                && env_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !well_formed {
                self.invalid(
                    key.key("secret_env"),
                    "expected the name of an environment variable (A-Z, 0-9, _)",
                );
            }
        }
        let webhooks = key_path!["webhooks"];
        self.nonzero_duration(webhooks.key("timeout"), file.webhooks.timeout);
        self.consumer(webhooks.key("consumer"), &file.webhooks.consumer);
    }

    fn streams(&mut self, file: &File) {
        let streams = &file.streams;
        for (name, stream) in [
            ("docs", &streams.docs),
            ("work", &streams.work),
            ("results", &streams.results),
            ("events", &streams.events),
            ("dead_letter", &streams.dead_letter),
        ] {
            self.stream(key_path!["streams", name], stream);
        }
    }

    fn stream(&mut self, key: KeyPath, stream: &StreamSettings) {
        self.at_least_one(key.key("max_bytes"), stream.max_bytes);
        if !(1..=5).contains(&stream.replicas) {
            self.invalid(key.key("replicas"), "must be between 1 and 5");
        }
        if !stream.max_age.is_zero() && stream.duplicate_window > stream.max_age {
            self.invalid(key.key("duplicate_window"), "must not be longer than `max_age`");
        }
    }

    /// Checks every stage on its own; returns the known ones.
    fn stages<'f>(&mut self, file: &'f File) -> Stages<'f> {
        let mut stages: Stages<'f> = file.stages.values().collect();
        stages.sort_by_key(|stage| catalogue::stage_rank(&stage.name));
        stages.retain(|stage| {
            let known = catalogue::stage_spec(&stage.name).is_some();
            if !known {
                self.errors.push(TopologyError::UnknownStage {
                    at: self.source.at(&key_path!["stages", &stage.name]),
                    stage: stage.name.clone(),
                    known: catalogue::stage_names(),
                });
            }
            known
        });
        let mut subjects: BTreeMap<&str, &str> = BTreeMap::new();
        for stage in &stages {
            self.stage(stage, file);
            if let Some(other) = subjects.insert(stage.subject(), &stage.name) {
                self.errors.push(TopologyError::DuplicateSubject {
                    at: self.source.at(&key_path!["stages", &stage.name, "subject"]),
                    stage: stage.name.clone(),
                    subject: stage.subject().to_owned(),
                    other: other.to_owned(),
                });
            }
        }
        stages
    }

    fn stage(&mut self, stage: &Stage, file: &File) {
        let key = key_path!["stages", &stage.name];
        let Some(spec) = catalogue::stage_spec(&stage.name) else { return };

        if stage.steps.is_empty() {
            self.invalid(key.key("steps"), "a stage runs at least one step");
        }
        let mut seen = BTreeSet::new();
        for (i, step) in stage.steps.iter().enumerate() {
            let at = self.source.at(&key.key("steps").index(i));
            let Some(step_spec) = spec.step(step) else {
                self.errors.push(TopologyError::UnknownStep {
                    at,
                    stage: stage.name.clone(),
                    step: step.clone(),
                    known: spec.step_names(),
                });
                continue;
            };
            if !seen.insert(step) {
                self.invalid(key.key("steps").index(i), format!("step `{step}` is listed twice"));
            }
            if let Some(model) = step_spec.model
                && !stage.models.iter().any(|m| m == model)
            {
                self.errors.push(TopologyError::StepNeedsModel {
                    at,
                    stage: stage.name.clone(),
                    step: step.clone(),
                    model,
                });
            }
        }

        for (i, model) in stage.models.iter().enumerate() {
            if !file.models.contains_key(model) {
                self.errors.push(TopologyError::UndefinedModel {
                    at: self.source.at(&key.key("models").index(i)),
                    stage: stage.name.clone(),
                    model: model.clone(),
                });
            }
        }

        let subject = stage.subject();
        let is_token_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if subject.is_empty() || !subject.chars().all(is_token_char) {
            self.invalid(key.key("subject"), "a subject token may only hold a-z, 0-9, '-' and '_'");
        }

        self.at_least_one(key.key("concurrency"), stage.concurrency.into());
        self.consumer(key.key("consumer"), &stage.consumer);
        self.scaling(key.key("scaling"), &stage.scaling);
        self.resources(key.key("resources"), &stage.resources);

        for (i, next) in stage.next.iter().enumerate() {
            let defined =
                catalogue::stage_spec(next).is_some() && file.stages.contains_key(next.as_str());
            if !defined {
                self.errors.push(TopologyError::UnknownNext {
                    at: self.source.at(&key.key("next").index(i)),
                    stage: stage.name.clone(),
                    next: next.clone(),
                });
            }
        }
        if stage.name == EXIT_STAGE && !stage.next.is_empty() {
            self.invalid(key.key("next"), "`assemble` ends the pipeline and has no `next`");
        }
        if stage.name != EXIT_STAGE && stage.next.is_empty() {
            self.errors.push(TopologyError::DeadEnd {
                at: self.source.at(&key),
                stage: stage.name.clone(),
            });
        }
    }

    fn consumer(&mut self, key: KeyPath, consumer: &ConsumerSettings) {
        self.nonzero_duration(key.key("ack_wait"), consumer.ack_wait);
        self.at_least_one(key.key("max_deliver"), consumer.max_deliver.into());
        if consumer.backoff.len() >= consumer.max_deliver as usize {
            self.invalid(key.key("backoff"), "needs fewer entries than `max_deliver`");
        }
        for (i, delay) in consumer.backoff.iter().enumerate() {
            self.nonzero_duration(key.key("backoff").index(i), *delay);
        }
        self.at_least_one(key.key("max_ack_pending"), consumer.max_ack_pending.into());
        self.at_least_one(key.key("fetch_batch"), consumer.fetch_batch.into());
        if consumer.fetch_batch > consumer.max_ack_pending {
            self.invalid(key.key("fetch_batch"), "must not exceed `max_ack_pending`");
        }
    }

    fn scaling(&mut self, key: KeyPath, scaling: &ScalingPolicy) {
        self.at_least_one(key.key("lag_threshold"), scaling.lag_threshold);
        self.at_least_one(key.key("max_replicas"), scaling.max_replicas.into());
        if scaling.min_replicas > scaling.max_replicas {
            self.invalid(
                key.key("min_replicas"),
                format!(
                    "min_replicas ({}) exceeds max_replicas ({})",
                    scaling.min_replicas, scaling.max_replicas
                ),
            );
        }
        if let Some(fallback) = scaling.fallback_replicas
            && (fallback == 0 || fallback > scaling.max_replicas)
        {
            self.invalid(
                key.key("fallback_replicas"),
                format!("must be between 1 and max_replicas ({})", scaling.max_replicas),
            );
        }
    }

    /// Kubernetes quantities, each limit at least its request.
    fn resources(&mut self, key: KeyPath, resources: &Resources) {
        type Parse = fn(&str) -> Option<u64>;
        let pairs: [(_, _, Parse, &str); 2] = [
            (
                ("cpu", &resources.cpu),
                ("cpu_limit", &resources.cpu_limit),
                Resources::cpu_millis,
                "a CPU quantity such as \"500m\" or \"2\"",
            ),
            (
                ("memory", &resources.memory),
                ("memory_limit", &resources.memory_limit),
                Resources::memory_bytes,
                "a memory quantity such as \"256Mi\"",
            ),
        ];
        for ((request_key, request), (limit_key, limit), parse, expected) in pairs {
            match (parse(request), parse(limit)) {
                (Some(request), Some(limit)) if limit < request => {
                    self.invalid(key.key(limit_key), "must not be below the request");
                }
                (request, limit) => {
                    for (name, value) in [(request_key, request), (limit_key, limit)] {
                        if value.is_none() {
                            self.invalid(key.key(name), format!("expected {expected}"));
                        }
                    }
                }
            }
        }
    }

    /// Entry and exit present, no cycle, every stage reachable from the entry.
    fn graph(&mut self, stages: &Stages<'_>) {
        for required in [ENTRY_STAGE, EXIT_STAGE] {
            if !stages.iter().any(|stage| stage.name == required) {
                let at = self.source.at(&key_path!["stages"]);
                self.errors.push(TopologyError::MissingStage { at, stage: required });
            }
        }
        self.cycles(stages);
        let reached = reachable(stages);
        for stage in stages {
            if !reached.contains(stage.name.as_str()) {
                self.errors.push(TopologyError::Unreachable {
                    at: self.source.at(&key_path!["stages", &stage.name]),
                    stage: stage.name.clone(),
                });
            }
        }
    }

    fn cycles(&mut self, stages: &Stages<'_>) {
        let mut done = BTreeSet::new();
        for stage in stages {
            let mut stack = Vec::new();
            self.visit(stage, stages, &mut stack, &mut done);
        }
    }

    /// Depth-first search; a `next` leading back onto `stack` closes a cycle.
    fn visit<'f>(
        &mut self,
        stage: &'f Stage,
        stages: &Stages<'f>,
        stack: &mut Vec<&'f str>,
        done: &mut BTreeSet<&'f str>,
    ) {
        if done.contains(stage.name.as_str()) {
            return;
        }
        stack.push(&stage.name);
        for (i, next) in stage.next.iter().enumerate() {
            if let Some(start) = stack.iter().position(|name| *name == next.as_str()) {
                let mut path: Vec<String> =
                    stack[start..].iter().map(|name| name.to_string()).collect();
                path.push(next.clone());
                let at = self.source.at(&key_path!["stages", &stage.name, "next"].index(i));
                self.errors.push(TopologyError::Cycle { at, path });
            } else if let Some(next) = stages.iter().find(|s| &s.name == next) {
                self.visit(next, stages, stack, done);
            }
        }
        stack.pop();
        done.insert(&stage.name);
    }
}

/// The names of the stages reachable from the entry stage.
fn reachable<'f>(stages: &Stages<'f>) -> BTreeSet<&'f str> {
    let mut reached = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([ENTRY_STAGE]);
    while let Some(name) = queue.pop_front() {
        let Some(stage) = stages.iter().find(|stage| stage.name == name) else { continue };
        if reached.insert(stage.name.as_str()) {
            queue.extend(stage.next.iter().map(String::as_str));
        }
    }
    reached
}

/// Kahn's algorithm over an acyclic graph, ties broken by catalogue order.
fn topological_order(stages: &Stages<'_>) -> Vec<String> {
    let mut incoming: BTreeMap<&str, usize> =
        stages.iter().map(|stage| (stage.name.as_str(), 0)).collect();
    for next in stages.iter().flat_map(|stage| &stage.next) {
        if let Some(count) = incoming.get_mut(next.as_str()) {
            *count += 1;
        }
    }
    let mut order = Vec::with_capacity(stages.len());
    let mut ready: Vec<&Stage> = stages
        .iter()
        .copied()
        .filter(|stage| incoming.get(stage.name.as_str()) == Some(&0))
        .collect();
    while !ready.is_empty() {
        ready.sort_by_key(|stage| std::cmp::Reverse(catalogue::stage_rank(&stage.name)));
        let Some(stage) = ready.pop() else { break };
        order.push(stage.name.clone());
        for next in &stage.next {
            if let Some(count) = incoming.get_mut(next.as_str()) {
                *count -= 1;
                if *count == 0
                    && let Some(next) = stages.iter().find(|s| &s.name == next)
                {
                    ready.push(next);
                }
            }
        }
    }
    order
}
