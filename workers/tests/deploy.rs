//! `pagestream deploy render`: the committed manifests are what the topology
//! renders, a changed scaling policy shows in the next render, and every
//! KEDA trigger names a stream and durable consumer that `streams apply`
//! creates.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::jetstream::Route;
use runtime::jetstream::provision;
use serde_json::Value;
use workers::deploy::{self, Options, Scaler};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn embedded() -> topology::Pipeline {
    topology::Pipeline::embedded(pages::steps::catalogue()).unwrap()
}

fn scaled_object<'a>(objects: &'a [(String, Vec<Value>)], stage: &str) -> &'a Value {
    let (_, objects) = objects.iter().find(|(file, _)| file == &format!("{stage}.yaml")).unwrap();
    objects.iter().find(|object| object["kind"] == "ScaledObject").unwrap()
}

#[test]
fn the_committed_manifests_are_what_the_topology_renders() {
    let out = repo().join(deploy::DEFAULT_OUT);
    let files = deploy::render(&embedded(), topology::EMBEDDED, &Options::default());
    for file in &files {
        let committed = std::fs::read_to_string(out.join(&file.name))
            .unwrap_or_else(|error| panic!("{}: {error}", file.name));
        assert!(
            committed == file.text,
            "{} differs from the topology: run `pagestream deploy render`",
            file.name
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut rendered: Vec<String> = files.iter().map(|file| file.name.clone()).collect();
    on_disk.sort();
    rendered.sort();
    assert_eq!(on_disk, rendered, "files the topology does not render are in {}", out.display());
}

#[test]
fn the_render_command_writes_and_checks_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated");
    let pagestream = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_pagestream"))
            .args(["deploy", "render", "--out"])
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (ok, text) = pagestream(&["--check"]);
    assert!(!ok, "{text}");
    assert!(pagestream(&[]).0);
    let (ok, text) = pagestream(&["--check"]);
    assert!(ok, "{text}");
    // A file left by a stage that no longer exists, or an edited one, fails the check.
    std::fs::write(out.join("old-stage.yaml"), "kind: Deployment\n").unwrap();
    std::fs::write(out.join("ocr.yaml"), "edited\n").unwrap();
    let (ok, text) = pagestream(&["--check"]);
    assert!(!ok);
    assert!(text.contains("ocr.yaml, old-stage.yaml"), "{text}");
    assert!(pagestream(&[]).0);
    assert!(!out.join("old-stage.yaml").exists());
    assert!(pagestream(&["--check"]).0);
}

#[test]
fn a_changed_scaling_policy_changes_only_that_stages_scaled_object() {
    let text = topology::EMBEDDED.replace(
        "[stages.ocr.scaling]\nlag_threshold = 4\nmin_replicas = 1\nmax_replicas = 16\ncooldown = \"5m\"",
        "[stages.ocr.scaling]\nlag_threshold = 7\nmin_replicas = 2\nmax_replicas = 9\ncooldown = \"2m\"\nactivation_lag = 3\nfallback_replicas = 4",
    );
    assert_ne!(text, topology::EMBEDDED, "the ocr scaling table moved in the topology");
    let changed =
        topology::Pipeline::from_str(&text, "changed.toml", pages::steps::catalogue()).unwrap();
    let before = deploy::objects(&embedded(), &Options::default());
    let after = deploy::objects(&changed, &Options::default());

    let spec = &scaled_object(&after, "ocr")["spec"];
    assert_eq!(spec["minReplicaCount"], 2);
    assert_eq!(spec["maxReplicaCount"], 9);
    assert_eq!(spec["cooldownPeriod"], 120);
    assert_eq!(spec["fallback"]["replicas"], 4);
    let behavior = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
    assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 120);
    assert_eq!(behavior["scaleUp"]["stabilizationWindowSeconds"], 0);
    let metadata = &spec["triggers"][0]["metadata"];
    assert_eq!(metadata["lagThreshold"], "7");
    assert_eq!(metadata["activationLagThreshold"], "3");
    let (_, ocr) = after.iter().find(|(file, _)| file == "ocr.yaml").unwrap();
    assert_eq!(ocr[0]["spec"]["replicas"], 2, "the Deployment starts at the floor");

    for ((file, old), (_, new)) in before.iter().zip(&after) {
        if file != "ocr.yaml" {
            assert_eq!(old, new, "{file} changed");
        }
    }
    assert_eq!(scaled_object(&before, "ocr")["spec"]["maxReplicaCount"], 16);
}

#[test]
fn every_trigger_reads_a_consumer_that_streams_apply_creates() {
    let topology = embedded();
    let objects = deploy::objects(&topology, &Options::default());
    let plan = provision::plan(&topology, &Route::from_topology(&topology));
    for stage in topology.stages() {
        let trigger = &scaled_object(&objects, stage.name())["spec"]["triggers"][0];
        assert_eq!(trigger["type"], "nats-jetstream");
        let metadata = trigger["metadata"].as_object().unwrap();
        // KEDA's nats-jetstream scaler needs these keys, every value a string.
        for key in ["natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"]
        {
            let value = metadata.get(key).and_then(Value::as_str);
            assert!(value.is_some_and(|v| !v.is_empty()), "{}: {key} missing", stage.name());
        }
        assert!(metadata.values().all(Value::is_string), "{metadata:?}");
        assert_eq!(metadata["account"], "PAGESTREAM", "the account of deploy/nats/accounts.conf");
        let (stream, consumer) = (&metadata["stream"], &metadata["consumer"]);
        assert!(
            plan.consumers
                .iter()
                .any(|(s, config)| s == stream
                    && config.durable_name.as_deref() == consumer.as_str()),
            "{}: no durable consumer {consumer} on {stream} in the plan",
            stage.name()
        );
        assert_eq!(
            metadata["lagThreshold"].as_str().unwrap(),
            stage.scaling().lag_threshold.to_string()
        );
    }
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    let objects = deploy::objects(&embedded(), &Options::default());
    let pods = objects
        .iter()
        .flat_map(|(_, objects)| objects)
        .filter(|object| object["kind"] == "Deployment" || object["kind"] == "Job");
    let mut count = 0;
    for object in pods {
        count += 1;
        let pod = &object["spec"]["template"]["spec"];
        let name = &object["metadata"]["name"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() >= 10000, "{name}");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{name}");
            for kind in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(container["resources"][kind][resource].is_string(), "{name} {kind}");
                }
            }
        }
    }
    // every stage, the streams Job, the metrics exporter
    assert_eq!(count, embedded().stages().len() + 2);
}

#[test]
fn the_prometheus_scaler_reads_the_exporters_lag_of_each_stage() {
    let topology = embedded();
    let server_address = "http://prometheus.example:9090".to_string();
    let options = Options {
        scaler: Scaler::Prometheus { server_address: server_address.clone() },
        ..Options::default()
    };
    let objects = deploy::objects(&topology, &options);
    for stage in topology.stages() {
        let trigger = &scaled_object(&objects, stage.name())["spec"]["triggers"][0];
        assert_eq!(trigger["type"], "prometheus");
        let metadata = trigger["metadata"].as_object().unwrap();
        assert!(metadata.values().all(Value::is_string), "{metadata:?}");
        assert_eq!(metadata["serverAddress"], server_address.as_str());
        assert_eq!(
            metadata["query"],
            format!(
                "max(pagestream_stage_lag{{namespace=\"pagestream\",stage=\"{}\"}})",
                stage.name()
            )
        );
        assert_eq!(metadata["threshold"], stage.scaling().lag_threshold.to_string().as_str());
        // no sample must not read as zero lag
        assert_eq!(metadata["ignoreNullValues"], "false");
    }
    // The exporter is rendered either way: one replica running `metrics-exporter`.
    let (_, exporter) = objects.iter().find(|(file, _)| file == "metrics-exporter.yaml").unwrap();
    assert_eq!(exporter[0]["spec"]["replicas"], 1);
    let container = &exporter[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["metrics-exporter"]));
    // Everything else is the same as with the nats-jetstream trigger.
    let jetstream = deploy::objects(&topology, &Options::default());
    for ((file, with_prometheus), (_, with_jetstream)) in objects.iter().zip(&jetstream) {
        for (a, b) in with_prometheus.iter().zip(with_jetstream) {
            if a["kind"] != "ScaledObject" {
                assert_eq!(a, b, "{file}");
            }
        }
    }
}
