//! Test-only fault hooks: make one pipeline task panic or end at a chosen moment, so the tests of
//! the supervisor can prove that every kind of task is watched; or make a pipeline's start slow,
//! so a test can look at ferry while it is still starting its pipelines.
//!
//! Compiled only with the `fault-injection` feature (the test command enables it; a release build
//! never has it). `FERRY_FAULT` lists faults separated by commas, each
//! `<pipeline>/<task>:<panic|return>:<after>`, e.g. `lifecycle/publisher:panic:2s`: the first time
//! that task of that pipeline has run for `after`, it panics or returns; or
//! `<pipeline>/start:stall:<for>`: the pipeline's first start blocks its caller for `for`. Each
//! fault fires once per process, so the restarted task runs normally.

#[cfg(feature = "fault-injection")]
pub use enabled::{inject, stall_start};

/// Without the feature the future runs untouched.
#[cfg(not(feature = "fault-injection"))]
pub fn inject<F: std::future::Future<Output = ()>>(_pipeline: &str, _task: &str, future: F) -> F {
    future
}

/// Without the feature a start is never held up.
#[cfg(not(feature = "fault-injection"))]
pub fn stall_start(_pipeline: &str) {}

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
        Stall,
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
                    "stall" => Action::Stall,
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
            fault.pipeline == pipeline
                && fault.task == task
                && fault.action != Action::Stall
                && !fault.fired.load(Ordering::SeqCst)
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
            // Stall faults are held up at a start, never picked here.
            Action::Return | Action::Stall => {}
        }
    }

    /// Blocks the thread starting `pipeline` for the fault's duration, the first time, when
    /// `FERRY_FAULT` names `<pipeline>/start:stall:<for>`: the rest of ferry (the monitor, other
    /// pipelines' tasks) goes on meanwhile on the runtime's other threads, as it would around a
    /// slow start.
    pub fn stall_start(pipeline: &str) {
        let fault = faults().iter().find(|fault| {
            fault.pipeline == pipeline && fault.task == "start" && fault.action == Action::Stall
        });
        if let Some(fault) = fault {
            if !fault.fired.swap(true, Ordering::SeqCst) {
                tracing::warn!(pipeline, stall = ?fault.after, "stalling the pipeline's start (FERRY_FAULT)");
                std::thread::sleep(fault.after);
            }
        }
    }
}
