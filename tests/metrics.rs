//! The metrics an alert or a dashboard reads, scraped from a real `ferry run` from its first answer
//! on.

mod common;

/// Needs the test-only fault hooks (src/fault.rs) to hold a start up.
#[cfg(feature = "fault-injection")]
mod while_starting {
    use super::common::{find_pipeline, sites_with_source, Ferry, FerryOptions};

    /// A config for instance `dc1`: an adapter `lifecycle` on east, a replicator `copy` from east's
    /// SRC to west's DST, and `extra` (more keys of the replicator, indented four spaces).
    fn adapter_and_replicator_yaml(
        east: &str,
        west: &str,
        adapter_extra: &str,
        extra: &str,
    ) -> String {
        format!(
            r#"name: dc1
state_dir: "{{state_dir}}"
monitor: {{ listen: "{{monitor}}" }}
connections:
  east: {{ servers: ["{east}"] }}
  west: {{ servers: ["{west}"] }}
adapters:
  - name: lifecycle
    kind: choria_lifecycle
    connection: east
    subjects: ["choria.lifecycle.event.>"]
    output: {{ stream: FERRY_LIFECYCLE, subject: "ferry.lifecycle.{{type}}.{{component}}", duplicate_window: 2m }}
{adapter_extra}replicators:
  - name: copy
    from: {{ connection: east, stream: SRC }}
    to: {{ connection: west, stream: DST, create: true, duplicate_window: 10m }}
{extra}"#
        )
    }

    /// The monitor answers only once every pipeline is registered, so the first 200 from
    /// `/readyz` speaks for all of them and the first scrape has every pipeline's label sets. A
    /// replicator whose start is held up (`FERRY_FAULT`, test builds only) leaves the time to ask
    /// while the adapter before it already runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_ready_answer_and_scrape_cover_every_pipeline() {
        let sites = sites_with_source().await;
        let yaml = adapter_and_replicator_yaml(&sites.east.url(), &sites.west.url(), "", "");
        let mut ferry = Ferry::start_with(
            &yaml,
            FerryOptions::default().env("FERRY_FAULT", "copy/start:stall:3s"),
        );
        ferry.wait_ready().await;
        let (_, status) = ferry.get("/status").await.expect("GET /status");
        let status: serde_json::Value = serde_json::from_str(&status).expect("/status is JSON");
        assert!(
            find_pipeline(&status, "copy").is_some(),
            "the first ready answer came before the replicator was registered: {status}"
        );
        let first = ferry.metrics().await;
        for name in ["ferry_pipeline_ready", "ferry_replicator_is_leader"] {
            assert!(
                first.get(name, &[("pipeline", "copy")]).is_some(),
                "{name} of the replicator is not in the first scrape"
            );
        }
        assert!(
            ferry.log().contains("stalling the pipeline's start"),
            "the start was not held up, so this proves nothing:\n{}",
            ferry.log()
        );
    }
}
