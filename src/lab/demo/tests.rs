use super::*;

#[test]
fn metrics_are_summed_over_labels() {
    let text = "\
# HELP ferry_adapter_received_total messages\n\
# TYPE ferry_adapter_received_total counter\n\
ferry_adapter_received_total{pipeline=\"lifecycle\"} 10\n\
ferry_adapter_received_total{pipeline=\"registration\"} 32\n\
ferry_adapter_published_total{pipeline=\"lifecycle\"} 7\n\
ferry_adapter_duplicates_total{pipeline=\"lifecycle\"} 3\n\
ferry_adapter_invalid_total{pipeline=\"registration\",reason=\"not_json\"} 2\n\
ferry_adapter_dropped_total{pipeline=\"registration\",reason=\"spool_full\"} 1\n\
ferry_adapter_spool_messages{pipeline=\"registration\"} 0\n\
ferry_adapter_publish_seconds_bucket{pipeline=\"lifecycle\",le=\"0.005\"} 9\n\
ferry_adapter_received_totalx 1000\n";
    let counts = parse_metrics(text).unwrap().adapters;
    assert_eq!(counts.received, 42);
    assert_eq!(counts.published, 7);
    assert_eq!(counts.duplicates, 3);
    assert_eq!(counts.invalid, 2);
    assert_eq!(counts.dropped, 1);
    assert_eq!(counts.accounted(), 13);
    assert!(!counts.idle());
}

#[test]
fn replicator_metrics_are_kept_per_pipeline() {
    let text = "\
ferry_replicator_copied_total{pipeline=\"registration-to-west\"} 200\n\
ferry_replicator_copied_total{pipeline=\"lifecycle-to-west\"} 1500\n\
ferry_replicator_skipped_total{pipeline=\"registration-to-west\",reason=\"sampled\"} 800\n\
ferry_replicator_skipped_total{pipeline=\"registration-to-west\",reason=\"age\"} 2\n\
ferry_replicator_duplicates_total{pipeline=\"lifecycle-to-west\"} 1\n\
ferry_replicator_lag_messages{pipeline=\"registration-to-west\"} 4\n\
ferry_replicator_lag_messages{pipeline=\"lifecycle-to-west\"} 3\n\
ferry_replicator_checkpoint_sequence{pipeline=\"lifecycle-to-west\"} 1501\n\
ferry_replicator_source_sequence{pipeline=\"lifecycle-to-west\"} 1504\n\
ferry_replicator_copy_delay_seconds_bucket{le=\"0.1\",pipeline=\"lifecycle-to-west\"} 9\n\
ferry_advisories_total{event=\"new\",pipeline=\"registration-to-west\"} 200\n\
ferry_advisories_total{event=\"timeout\",pipeline=\"registration-to-west\"} 0\n";
    let metrics = parse_metrics(text).unwrap();
    assert_eq!(metrics.copied(), 1700);
    assert_eq!(metrics.sampled_out(), 800);
    assert_eq!(metrics.lag(), 7);
    let registration = metrics.replicator("registration-to-west");
    assert_eq!(registration.copied, 200);
    assert_eq!(registration.skipped("sampled"), 800);
    assert_eq!(registration.skipped_total(), 802);
    let lifecycle = metrics.replicator("lifecycle-to-west");
    assert_eq!(lifecycle.duplicates, 1);
    assert_eq!(lifecycle.checkpoint, 1501);
    assert_eq!(lifecycle.source_sequence, 1504);
    assert_eq!(metrics.advisories["new"], 200);
    assert_eq!(metrics.advisories["timeout"], 0);
    assert_eq!(metrics.replicator("unknown"), ReplicatorCounts::default());
}

#[test]
fn the_books_balance_only_when_west_holds_what_it_should() {
    let [registration, lifecycle] = REPLICATORS;
    let mut counts = ReplicatorCounts {
        copied: 200,
        ..ReplicatorCounts::default()
    };
    counts.skipped.insert("sampled".to_string(), 800);
    let books = ReplicatorBooks::new(&registration, 1000, 200, &counts);
    assert_eq!(books.lost, 0);
    assert_eq!(books.sampled_out, 800);
    // West misses a copied message.
    assert_eq!(
        ReplicatorBooks::new(&registration, 1000, 199, &counts).lost,
        1
    );
    // A source message was neither copied nor counted.
    assert_eq!(
        ReplicatorBooks::new(&registration, 1001, 200, &counts).lost,
        1
    );

    let full = ReplicatorCounts {
        copied: 1500,
        ..ReplicatorCounts::default()
    };
    assert_eq!(ReplicatorBooks::new(&lifecycle, 1500, 1500, &full).lost, 0);
    assert_eq!(ReplicatorBooks::new(&lifecycle, 1500, 1497, &full).lost, 3);
}

#[test]
fn numbers_are_grouped() {
    assert_eq!(group(0), "0");
    assert_eq!(group(999), "999");
    assert_eq!(group(1_000), "1,000");
    assert_eq!(group(1_234_567), "1,234,567");
}

#[test]
fn the_config_names_both_adapters_and_both_replicators() {
    let config = demo_config(
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4223",
        Path::new("/tmp/x \"y\""),
        SocketAddr::from(([127, 0, 0, 1], 9464)),
    );
    assert!(config.contains("kind: choria_lifecycle"));
    assert!(config.contains("kind: choria_registration"));
    assert!(config.contains("subject: \"ferry.lifecycle.{type}.{component}\""));
    assert!(config.contains("state_dir: \"/tmp/x \\\"y\\\"\""));
    assert!(config.contains("listen: \"127.0.0.1:9464\""));
    assert!(config.contains("servers: [\"nats://127.0.0.1:4223\"]"));
    assert!(config.contains("name: registration-to-west"));
    assert!(config.contains("name: lifecycle-to-west"));
    assert!(config.contains("key: { field: sender }"));
    assert!(config.contains("subject: \"ferry.advisories.{event}.{value}\""));
}

/// The demo's config passes ferry's own validation.
#[test]
fn the_config_is_valid() {
    let config = demo_config(
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4223",
        Path::new("/tmp/ferry-demo-state"),
        SocketAddr::from(([127, 0, 0, 1], 9464)),
    );
    let loaded = crate::config::parse_str(&config, Path::new("ferry.yaml"));
    if let Err(error) = loaded {
        panic!("the demo config is invalid: {error}");
    }
}
