//! Semantic checks of a parsed pipeline file: names, values, subjects,
//! models and the stage graph. Every problem is collected, not just the first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::catalogue::{self, Catalogue, ENTRY_STAGE, EXIT_STAGE, SettingsProblem};
use crate::error::TopologyError;
use crate::pipeline::{File, Stage, step_table};
use crate::settings::{ConsumerSettings, Resources, ScalingPolicy, StreamSettings};
use crate::source::{KeyPath, Source, key_path};

/// Checks `file` against `catalogue` and marks the stages that read the
/// document; on success returns the stage names in topological order.
pub(crate) fn check(
    file: &mut File,
    source: &Source<'_>,
    catalogue: &Catalogue,
) -> Result<Vec<String>, Vec<TopologyError>> {
    for stage in file.stages.values_mut() {
        stage.reads_document = stage
            .steps
            .iter()
            .any(|step| catalogue.step(step).is_some_and(|info| info.reads_document));
    }
    let file = &*file;
    let mut checker = Checker { source, catalogue, errors: Vec::new() };
    checker.limits(file);
    checker.step_tables(file);
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
    catalogue: &'s Catalogue,
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

    fn limits(&mut self, file: &File) {
        let limits = &file.limits;
        self.at_least_one(key_path!["limits", "max_document_bytes"], limits.max_document_bytes);
        self.at_least_one(key_path!["limits", "max_pages"], limits.max_pages.into());
        self.at_least_one(key_path!["limits", "max_page_pixels"], limits.max_page_pixels);
        self.nonzero_duration(key_path!["limits", "step_timeout"], limits.step_timeout);
    }

    /// Each `[steps.<name>]`: a built-in step's settings, or a rule step of
    /// a known kind, checked by the step's own settings type.
    fn step_tables(&mut self, file: &File) {
        for (name, table) in &file.steps {
            let key = key_path!["steps", name];
            let table = step_table(table.clone());
            let check = match (self.catalogue.step(name), &table.kind) {
                (Some(_), Some(_)) => {
                    self.invalid(
                        key.key("kind"),
                        format!("`{name}` is a built-in step; a rule step needs a name of its own"),
                    );
                    continue;
                }
                (Some(step), None) => step.settings,
                (None, None) if table.settings.contains_key("kind") => {
                    self.invalid(key.key("kind"), "expected the name of a rule kind (a string)");
                    continue;
                }
                (None, None) => {
                    self.invalid(
                        key,
                        format!(
                            "`{name}` is no built-in step; a rule step needs `kind` (one of {})",
                            self.catalogue.rule_kind_names().join(", ")
                        ),
                    );
                    continue;
                }
                (None, Some(kind)) => {
                    if !is_token(name) {
                        self.invalid(
                            key.clone(),
                            "a step name may only hold a-z, 0-9, '-' and '_'",
                        );
                    }
                    let Some(rule) = self.catalogue.rule_kind(kind) else {
                        self.invalid(
                            key.key("kind"),
                            format!(
                                "unknown rule kind `{kind}` (known: {})",
                                self.catalogue.rule_kind_names().join(", ")
                            ),
                        );
                        continue;
                    };
                    rule.settings
                }
            };
            if let Err(SettingsProblem { key: inner, reason }) = check(&table.settings) {
                let at = match &inner {
                    Some(inner) => inner.split('.').fold(key.clone(), |path, part| path.key(part)),
                    None => key.clone(),
                };
                self.invalid(at, reason);
            }
        }
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
            let known = catalogue::STAGES.contains(&stage.name.as_str());
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

        if stage.steps.is_empty() {
            self.invalid(key.key("steps"), "a stage runs at least one step");
        }
        let mut seen = BTreeSet::new();
        for (i, step) in stage.steps.iter().enumerate() {
            let step_key = key.key("steps").index(i);
            let at = self.source.at(&step_key);
            if !seen.insert(step) {
                self.invalid(step_key, format!("step `{step}` is listed twice"));
                continue;
            }
            if let Some(info) = self.catalogue.step(step).filter(|info| info.stage == stage.name) {
                for model in info.models {
                    if !stage.models.iter().any(|m| m == model) {
                        self.errors.push(TopologyError::StepNeedsModel {
                            at: at.clone(),
                            stage: stage.name.clone(),
                            step: step.clone(),
                            model,
                        });
                    }
                }
                for before in info.after {
                    if !stage.steps[..i].iter().any(|s| s == before) {
                        self.invalid(
                            step_key.clone(),
                            format!("`{step}` runs after `{before}`, which must come first"),
                        );
                    }
                }
                continue;
            }
            if let Some(info) = self.catalogue.step(step) {
                self.invalid(
                    step_key,
                    format!(
                        "`{step}` is a step of stage `{}`, not of `{}`",
                        info.stage, stage.name
                    ),
                );
                continue;
            }
            let is_rule = file.steps.get(step).is_some_and(|table| table.contains_key("kind"));
            if is_rule && !catalogue::is_page_stage(&stage.name) {
                self.invalid(
                    step_key,
                    format!("rule steps run in page stages, not in `{}`", stage.name),
                );
            } else if is_rule {
                let elsewhere = file
                    .stages
                    .values()
                    .find(|other| other.name < stage.name && other.steps.contains(step));
                if let Some(other) = elsewhere {
                    self.invalid(
                        step_key,
                        format!("rule step `{step}` is already listed by stage `{}`", other.name),
                    );
                }
            } else {
                let mut known: Vec<String> =
                    self.catalogue.step_names(&stage.name).into_iter().map(String::from).collect();
                if catalogue::is_page_stage(&stage.name) {
                    known.extend(
                        file.steps
                            .iter()
                            .filter(|(_, table)| table.contains_key("kind"))
                            .map(|(name, _)| name.clone()),
                    );
                }
                self.errors.push(TopologyError::UnknownStep {
                    at,
                    stage: stage.name.clone(),
                    step: step.clone(),
                    known,
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

        if !is_token(stage.subject()) {
            self.invalid(key.key("subject"), "a subject token may only hold a-z, 0-9, '-' and '_'");
        }

        self.at_least_one(key.key("concurrency"), stage.concurrency.into());
        self.consumer(key.key("consumer"), &stage.consumer);
        self.scaling(key.key("scaling"), &stage.scaling);
        self.resources(key.key("resources"), &stage.resources);

        for (i, next) in stage.next.iter().enumerate() {
            let defined = catalogue::STAGES.contains(&next.as_str())
                && file.stages.contains_key(next.as_str());
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

/// Whether `name` is a subject token or step name: a-z, 0-9, '-', '_'.
fn is_token(name: &str) -> bool {
    let is_token_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    !name.is_empty() && name.chars().all(is_token_char)
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
