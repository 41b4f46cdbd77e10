//! The lag signal on a 3-node NATS JetStream cluster (streams at replicas
//! 3): read through any of the three servers, it is the consumer leader's
//! count, before and after the leader steps down and after the leader's
//! server is killed. A missing consumer is an error metric, not a lag.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use async_nats::jetstream::context::Context;
use async_nats::jetstream::response::Response;
use futures::StreamExt;
use runtime::jetstream::lag::{Lag, LagError, LagReader};
use runtime::jetstream::{self, Route};
use runtime::metrics::Metrics;
use schemas::subjects::STREAM_WORK;
use support::{ConsumerOptions, NatsCluster, TENANT, connect, metric, topology_text};

const STAGE: &str = "render";

/// The test pipeline with every stream at 3 replicas and acks that never
/// expire during the test (held messages stay ack-pending).
fn replicated_topology() -> topology::Pipeline {
    let consumer = ConsumerOptions { ack_wait: "10m", ..ConsumerOptions::default() };
    let text = topology_text(&consumer, 64 << 20, 64 << 20).replace("replicas = 1", "replicas = 3");
    topology::Pipeline::from_str(&text, "pipeline.toml", pages::steps::catalogue()).unwrap()
}

async fn consumer_info(js: &Context) -> Result<consumer::Info, String> {
    let subject = format!("CONSUMER.INFO.{STREAM_WORK}.{STAGE}");
    match js.request(subject, &serde_json::json!({})).await {
        Ok(Response::Ok(info)) => Ok(info),
        Ok(Response::Err { error }) => Err(error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// The consumer's leader, once it has one.
async fn leader(js: &Context) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(info) = consumer_info(js).await
            && let Some(leader) = info.cluster.and_then(|c| c.leader)
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "the consumer has no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The render lag as read through every running server.
async fn lag_through_each(cluster: &NatsCluster, route: &Route) -> Vec<(String, Lag)> {
    let mut lags = Vec::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let reader = LagReader::new(jetstream::context(connect(&node.url()).await), route);
        // After a leader change the consumer is briefly leaderless: an
        // error then, never a wrong number.
        let deadline = Instant::now() + Duration::from_secs(30);
        let lag = loop {
            let lags = reader.read().await;
            let (_, lag) = lags.into_iter().find(|(stage, _)| stage == STAGE).unwrap();
            match lag {
                Ok(lag) => break lag,
                Err(error) => {
                    assert!(Instant::now() < deadline, "{}: {error}", node.name);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        lags.push((node.name.clone(), lag));
    }
    lags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_lag_is_the_leaders_count_through_any_server_and_across_leader_loss() {
    let mut cluster = NatsCluster::start(3);
    let topology = replicated_topology();
    let route = Route::from_topology(&topology);
    let js = jetstream::context(connect(&cluster.nodes[0].url()).await);
    NatsCluster::apply(&js, &topology).await;

    // 30 pages queued for render; 10 taken and acknowledged, 5 taken and held.
    let subject = route.subject(TENANT, STAGE);
    for i in 0..30 {
        js.publish(subject.clone(), format!("page {i}").into()).await.unwrap().await.unwrap();
    }
    let consumer: consumer::PullConsumer =
        js.get_consumer_from_stream(STAGE, STREAM_WORK).await.unwrap();
    let mut done = consumer.fetch().max_messages(10).messages().await.unwrap();
    let mut acked = 0;
    while let Some(message) = done.next().await {
        message.unwrap().double_ack().await.unwrap();
        acked += 1;
    }
    assert_eq!(acked, 10);
    let mut held = Vec::new();
    let mut taken = consumer.fetch().max_messages(5).messages().await.unwrap();
    while let Some(message) = taken.next().await {
        held.push(message.unwrap());
    }
    assert_eq!(held.len(), 5);
    let truth = Lag { pending: 15, ack_pending: 5 };

    let every = |lags: &[(String, Lag)]| lags.iter().all(|(_, lag)| *lag == truth);
    let lags = lag_through_each(&cluster, &route).await;
    assert_eq!(lags.len(), 3);
    assert!(every(&lags), "before any leader change: {lags:?}");

    // The leader hands over.
    let before = leader(&js).await;
    let stepdown: Response<serde_json::Value> = js
        .request(format!("CONSUMER.LEADER.STEPDOWN.{STREAM_WORK}.{STAGE}"), &serde_json::json!({}))
        .await
        .unwrap();
    assert!(matches!(stepdown, Response::Ok(_)), "stepdown refused: {stepdown:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = leader(&js).await;
        if now != before {
            break now;
        }
        assert!(Instant::now() < deadline, "leadership stayed with {before}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lags = lag_through_each(&cluster, &route).await;
    assert!(every(&lags), "after the stepdown from {before} to {after}: {lags:?}");

    // The leader's server dies; the other two elect a new one.
    drop(js);
    cluster.node(&after).kill();
    let lags = lag_through_each(&cluster, &route).await;
    assert_eq!(lags.len(), 2);
    assert!(every(&lags), "after {after} was killed: {lags:?}");

    // A consumer that does not exist: an error and no lag, never a huge one.
    let survivor = cluster.nodes.iter().find(|n| n.is_running()).unwrap().url();
    let js = jetstream::context(connect(&survivor).await);
    js.get_stream(STREAM_WORK).await.unwrap().delete_consumer(STAGE).await.unwrap();
    let metrics = Metrics::new();
    let lags = LagReader::new(js, &route).export(&metrics).await;
    let (_, render) = lags.iter().find(|(stage, _)| stage == STAGE).unwrap();
    assert!(matches!(render, Err(LagError::MissingConsumer { .. })), "{render:?}");
    let text = metrics.render();
    let stage = format!("stage=\"{STAGE}\"");
    assert!(
        !text.lines().any(|l| l.starts_with("pagestream_stage_lag{") && l.contains(&stage)),
        "a missing consumer exports no lag:\n{text}"
    );
    assert_eq!(metric(&text, "pagestream_stage_lag_up", &stage), 0.0);
    assert_eq!(
        metric(&text, "pagestream_stage_lag_errors_total", "reason=\"missing_consumer\""),
        1.0
    );
    assert_eq!(metric(&text, "pagestream_stage_lag_up", "stage=\"split\""), 1.0);
    assert_eq!(metric(&text, "pagestream_stage_lag", "stage=\"split\""), 0.0);
}
