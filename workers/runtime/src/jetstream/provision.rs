//! `pagestream streams apply`: the streams, consumers and key-value bucket
//! the topology asks for, created or updated idempotently, with a diff of
//! what changes.
//!
//! Consumers get no server-side `backoff`: on JetStream a backoff list
//! replaces `ack_wait` for every delivery, so a slow page would be
//! redelivered after the first backoff delay. Workers apply the topology's
//! backoff themselves when they nak a page (see `worker`).

use std::fmt;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{Context, GetStreamErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use schemas::subjects::{
    KV_DOCUMENTS, PREFIX, STREAM_DEAD_LETTER, STREAM_DOCS, STREAM_EVENTS, STREAM_RESULTS,
    STREAM_WORK,
};
use topology::{Discard, Retention, Storage, StreamSettings};

use super::{Error, Route};

/// Name of the stream behind the document-state bucket.
pub fn kv_stream() -> String {
    format!("KV_{KV_DOCUMENTS}")
}

/// What the topology asks of the server.
#[derive(Debug, Clone)]
pub struct Plan {
    pub streams: Vec<stream::Config>,
    /// `(stream, consumer)` pairs.
    pub consumers: Vec<(String, pull::Config)>,
}

/// Builds the plan for `topology`, with one consumer per stage of `route`.
pub fn plan(topology: &topology::Pipeline, route: &Route) -> Plan {
    let streams = topology.streams();
    let subjects = |tail: &str| vec![format!("{PREFIX}.*.{tail}")];
    let mut kv =
        stream_config(kv_stream(), vec![format!("$KV.{KV_DOCUMENTS}.>")], &streams.results);
    kv.description = Some("pagestream document state".into());
    kv.max_messages_per_subject = 1;
    kv.discard = DiscardPolicy::New;
    kv.retention = RetentionPolicy::Limits;
    kv.allow_rollup = true;
    kv.deny_delete = true;
    kv.allow_direct = true;
    if !kv.max_age.is_zero() {
        kv.duplicate_window = kv.duplicate_window.min(kv.max_age);
    }
    let plan_streams = vec![
        stream_config(STREAM_DOCS.into(), subjects("submit"), &streams.docs),
        stream_config(STREAM_WORK.into(), subjects("pages.>"), &streams.work),
        {
            // Direct gets name the subject in the API subject, so NATS
            // permissions can confine a tenant to its own results.
            let mut results =
                stream_config(STREAM_RESULTS.into(), subjects("results.>"), &streams.results);
            results.allow_direct = true;
            results
        },
        stream_config(STREAM_EVENTS.into(), subjects("events.>"), &streams.events),
        stream_config(STREAM_DEAD_LETTER.into(), subjects("dead.>"), &streams.dead_letter),
        kv,
    ];
    let mut consumers: Vec<(String, pull::Config)> = route
        .consumers()
        .into_iter()
        .map(|(stream, name, filter)| {
            let settings = route.stage(&name).map(|s| s.consumer.clone()).unwrap_or_default();
            let config = pull::Config {
                durable_name: Some(name.clone()),
                name: Some(name.clone()),
                description: Some(format!("pagestream stage {name}")),
                filter_subject: filter,
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: settings.ack_wait,
                max_deliver: i64::from(settings.max_deliver),
                max_ack_pending: i64::from(settings.max_ack_pending),
                max_waiting: 512,
                ..Default::default()
            };
            (stream, config)
        })
        .collect();
    let has_webhooks = topology.tenants().values().any(|tenant| tenant.webhook.is_some());
    if has_webhooks {
        let config = super::webhook::consumer_config(topology.webhooks());
        consumers.push((STREAM_RESULTS.to_string(), config));
    }
    Plan { streams: plan_streams, consumers }
}

fn stream_config(name: String, subjects: Vec<String>, settings: &StreamSettings) -> stream::Config {
    stream::Config {
        description: Some(format!("pagestream {}", name.to_lowercase())),
        name,
        subjects,
        retention: match settings.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Workqueue => RetentionPolicy::WorkQueue,
            Retention::Interest => RetentionPolicy::Interest,
        },
        storage: match settings.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        max_bytes: i64::try_from(settings.max_bytes).unwrap_or(i64::MAX),
        max_age: settings.max_age,
        discard: match settings.discard {
            Discard::Old => DiscardPolicy::Old,
            Discard::New => DiscardPolicy::New,
        },
        duplicate_window: settings.duplicate_window,
        num_replicas: usize::from(settings.replicas.max(1)),
        // The server's spelling of "no limit", so that a diff finds no change.
        max_messages_per_subject: -1,
        ..Default::default()
    }
}

/// One field that differs: name, current value, wanted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: String,
    pub to: String,
}

/// What applying the plan does to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Update(Vec<FieldChange>),
    Unchanged,
}

/// A stream or consumer and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `stream NAME` or `consumer STREAM/NAME`.
    pub object: String,
    pub action: Action,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Create => write!(f, "+ {} (create)", self.object),
            Action::Unchanged => write!(f, "= {} (unchanged)", self.object),
            Action::Update(fields) => {
                write!(f, "~ {}", self.object)?;
                for change in fields {
                    write!(f, "\n    {}: {} -> {}", change.field, change.from, change.to)?;
                }
                Ok(())
            }
        }
    }
}

fn stream_fields(c: &stream::Config) -> Vec<(&'static str, String)> {
    vec![
        ("subjects", c.subjects.join(",")),
        ("retention", format!("{:?}", c.retention)),
        ("storage", format!("{:?}", c.storage)),
        ("max_bytes", c.max_bytes.to_string()),
        ("max_age", format!("{:?}", c.max_age)),
        ("discard", format!("{:?}", c.discard)),
        ("duplicate_window", format!("{:?}", c.duplicate_window)),
        ("replicas", c.num_replicas.to_string()),
        ("max_messages_per_subject", c.max_messages_per_subject.to_string()),
        ("allow_rollup", c.allow_rollup.to_string()),
        ("deny_delete", c.deny_delete.to_string()),
        ("allow_direct", c.allow_direct.to_string()),
    ]
}

fn consumer_fields(c: &pull::Config) -> Vec<(&'static str, String)> {
    vec![
        ("filter_subject", c.filter_subject.clone()),
        ("ack_wait", format!("{:?}", c.ack_wait)),
        ("max_deliver", c.max_deliver.to_string()),
        ("max_ack_pending", c.max_ack_pending.to_string()),
        ("backoff", format!("{:?}", c.backoff)),
    ]
}

/// The fields whose values differ between `current` and `wanted`.
pub fn diff(
    current: &[(&'static str, String)],
    wanted: &[(&'static str, String)],
) -> Vec<FieldChange> {
    current
        .iter()
        .zip(wanted)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, b)| FieldChange { field: b.0, from: a.1.clone(), to: b.1.clone() })
        .collect()
}

/// Compares the plan with the server and, unless `dry_run`, creates and
/// updates what differs. Returns one change per stream and consumer.
pub async fn apply(js: &Context, plan: &Plan, dry_run: bool) -> Result<Vec<Change>, Error> {
    let mut changes = Vec::new();
    for wanted in &plan.streams {
        let object = format!("stream {}", wanted.name);
        let action = match js.get_stream(&wanted.name).await {
            Ok(stream) => {
                let fields =
                    diff(&stream_fields(&stream.cached_info().config), &stream_fields(wanted));
                if fields.is_empty() { Action::Unchanged } else { Action::Update(fields) }
            }
            Err(error) if is_not_found(&error.kind()) => Action::Create,
            Err(error) => return Err(Error::jetstream(format!("cannot read {object}"), error)),
        };
        if !dry_run {
            match &action {
                Action::Create => {
                    js.create_stream(wanted.clone())
                        .await
                        .map_err(|e| Error::jetstream(format!("cannot create {object}"), e))?;
                }
                Action::Update(_) => {
                    js.update_stream(wanted.clone())
                        .await
                        .map_err(|e| Error::jetstream(format!("cannot update {object}"), e))?;
                }
                Action::Unchanged => {}
            }
        }
        changes.push(Change { object, action });
    }
    for (stream_name, wanted) in &plan.consumers {
        let name = wanted.durable_name.clone().unwrap_or_default();
        let object = format!("consumer {stream_name}/{name}");
        let stream = match js.get_stream(stream_name).await {
            Ok(stream) => Some(stream),
            Err(error) if dry_run && is_not_found(&error.kind()) => None,
            Err(error) => {
                return Err(Error::jetstream(format!("cannot read stream {stream_name}"), error));
            }
        };
        let current = match &stream {
            Some(stream) => match stream.consumer_info(&name).await {
                Ok(info) => Some(info.config.clone()),
                Err(_) => None,
            },
            None => None,
        };
        let action = match &current {
            None => Action::Create,
            Some(current) => {
                let current = pull::Config {
                    filter_subject: current.filter_subject.clone(),
                    ack_wait: current.ack_wait,
                    max_deliver: current.max_deliver,
                    max_ack_pending: current.max_ack_pending,
                    backoff: current.backoff.clone(),
                    ..Default::default()
                };
                let fields = diff(&consumer_fields(&current), &consumer_fields(wanted));
                if fields.is_empty() { Action::Unchanged } else { Action::Update(fields) }
            }
        };
        if let (false, Some(stream), Action::Create | Action::Update(_)) =
            (dry_run, &stream, &action)
        {
            // Servers before 2.10 treat a create of an existing durable as an
            // update; newer ones want the explicit update.
            if let Err(error) = stream.create_consumer(wanted.clone()).await {
                stream.update_consumer(wanted.clone()).await.map_err(|update| {
                    Error::jetstream(format!("cannot create or update {object} ({error})"), update)
                })?;
            }
        }
        changes.push(Change { object, action });
    }
    Ok(changes)
}

fn is_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(error) if error.code() == 404)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn plan_follows_the_topology() {
        let topology = topology::Pipeline::embedded(pages::steps::catalogue()).unwrap();
        let route = Route::from_topology(&topology);
        let plan = plan(&topology, &route);
        let names: Vec<_> = plan.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                STREAM_DOCS,
                STREAM_WORK,
                STREAM_RESULTS,
                STREAM_EVENTS,
                STREAM_DEAD_LETTER,
                "KV_pagestream_documents"
            ]
        );
        let work = &plan.streams[1];
        assert_eq!(work.retention, RetentionPolicy::WorkQueue);
        assert_eq!(work.discard, DiscardPolicy::New);
        assert_eq!(work.subjects, ["pagestream.*.pages.>"]);
        let consumers: Vec<_> =
            plan.consumers.iter().map(|(s, c)| (s.as_str(), c.filter_subject.as_str())).collect();
        assert_eq!(
            consumers,
            [
                (STREAM_DOCS, "pagestream.*.submit"),
                (STREAM_WORK, "pagestream.*.pages.render"),
                (STREAM_WORK, "pagestream.*.pages.preprocess"),
                (STREAM_WORK, "pagestream.*.pages.layout"),
                (STREAM_WORK, "pagestream.*.pages.ocr"),
                (STREAM_WORK, "pagestream.*.pages.enrich"),
                (STREAM_WORK, "pagestream.*.pages.assemble"),
            ]
        );
        let ocr = &plan.consumers[4].1;
        assert_eq!(
            (ocr.ack_wait, ocr.max_deliver, ocr.max_ack_pending),
            (Duration::from_secs(60), 5, 32)
        );
        assert!(ocr.backoff.is_empty());
    }

    #[test]
    fn diff_lists_changed_fields() {
        let a = [("max_bytes", "1".to_string()), ("discard", "New".to_string())];
        let b = [("max_bytes", "2".to_string()), ("discard", "New".to_string())];
        let change = Change { object: "stream S".into(), action: Action::Update(diff(&a, &b)) };
        assert_eq!(change.to_string(), "~ stream S\n    max_bytes: 1 -> 2");
        assert!(diff(&a, &a).is_empty());
    }
}
