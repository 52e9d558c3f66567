//! Test-only fault hooks: make one pipeline task panic or end at a chosen moment, so the tests of
//! the supervisor can prove that every kind of task is watched.
//!
//! Compiled only with the `fault-injection` feature (the test command enables it; a release build
//! never has it). `FERRY_FAULT` lists faults separated by commas, each
//! `<pipeline>/<task>:<panic|return>:<after>`, e.g. `lifecycle/publisher:panic:2s`: the first time
//! that task of that pipeline has run for `after`, it panics or returns. Each fault fires once per
//! process, so the restarted task runs normally.

#[cfg(feature = "fault-injection")]
pub use enabled::inject;

/// Without the feature the future runs untouched.
#[cfg(not(feature = "fault-injection"))]
pub fn inject<F: std::future::Future<Output = ()>>(_pipeline: &str, _task: &str, future: F) -> F {
    future
}

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    use crate::config::units::parse_duration;

    #[derive(Debug, PartialEq)]
    enum Action {
        Panic,
        Return,
    }

    #[derive(Debug)]
    struct Fault {
        pipeline: String,
        task: String,
        action: Action,
        after: Duration,
        fired: AtomicBool,
    }

    fn faults() -> &'static [Fault] {
        static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
        FAULTS.get_or_init(|| {
            std::env::var("FERRY_FAULT")
                .map(|text| parse(&text))
                .unwrap_or_default()
        })
    }

    fn parse(text: &str) -> Vec<Fault> {
        text.split(',')
            .filter(|spec| !spec.trim().is_empty())
            .map(|spec| {
                let parts: Vec<&str> = spec.trim().split(':').collect();
                let (Some(target), Some(action), Some(after)) =
                    (parts.first(), parts.get(1), parts.get(2))
                else {
                    panic!("FERRY_FAULT: {spec:?} is not <pipeline>/<task>:<panic|return>:<after>");
                };
                let (pipeline, task) = target
                    .split_once('/')
                    .unwrap_or_else(|| panic!("FERRY_FAULT: {target:?} is not <pipeline>/<task>"));
                let action = match *action {
                    "panic" => Action::Panic,
                    "return" => Action::Return,
                    other => panic!("FERRY_FAULT: unknown action {other:?}"),
                };
                let after = parse_duration(after)
                    .unwrap_or_else(|error| panic!("FERRY_FAULT: {after:?}: {error}"));
                Fault {
                    pipeline: pipeline.to_string(),
                    task: task.to_string(),
                    action,
                    after,
                    fired: AtomicBool::new(false),
                }
            })
            .collect()
    }

    /// Runs `future`, unless a fault for this task fires first: then the future is dropped where
    /// it stands (as a crash would leave it) and the task panics or returns.
    pub async fn inject<F: Future<Output = ()>>(pipeline: &str, task: &str, future: F) {
        let fault = faults().iter().find(|fault| {
            fault.pipeline == pipeline && fault.task == task && !fault.fired.load(Ordering::SeqCst)
        });
        let Some(fault) = fault else {
            return future.await;
        };
        let mut future = std::pin::pin!(future);
        tokio::select! {
            _ = &mut future => return,
            _ = tokio::time::sleep(fault.after) => {}
        }
        if fault.fired.swap(true, Ordering::SeqCst) {
            return future.await;
        }
        tracing::warn!(pipeline, task, action = ?fault.action, "injecting a fault (FERRY_FAULT)");
        match fault.action {
            Action::Panic => panic!("fault injected into {pipeline}/{task}"),
            Action::Return => {}
        }
    }
}
