//! Starting a session: the source's identity and bounds, the target (created when allowed), the
//! resume position from the checkpoint and the target, the writer and the source consumer.

use super::*;

impl Copier {
    pub(super) async fn session(&mut self) -> SessionEnd {
        // A side whose connection is lost cannot answer: say so now, rather than after each
        // request of the start has timed out. (One still being established at start-up takes
        // the requests and sends them once it is up.)
        for connection in [&self.source, &self.target] {
            if connection.is_lost() {
                return SessionEnd::Retry(format!("connection {} is down", connection.name));
            }
        }
        let source = match streams::source_info(&self.source_js, &self.config).await {
            Ok(source) => source,
            Err(error) => return end_for(error, PipelineState::Failed),
        };
        let target = match streams::ensure_target(&self.target_js, &self.config, &source).await {
            Ok(target) => target,
            Err(error) => return end_for(error, PipelineState::Failed),
        };
        let checkpoint = match self.checkpoints.load(&self.config.name) {
            Ok(checkpoint) => checkpoint,
            Err(error) => return SessionEnd::Retry(format!("cannot read checkpoint: {error}")),
        };
        let needs_target_check = checkpoint.as_ref().is_none_or(|c| c.forced.is_none());
        let exclusive = self.config.to.writes == Writes::Exclusive;
        let mut view = TargetView {
            target: target.clone(),
            last: None,
            last_copied: None,
            after_checkpoint: None,
        };
        // What the target holds since the checkpoint, when it is the same target.
        let known = checkpoint
            .as_ref()
            .filter(|c| c.forced.is_none())
            .and_then(|c| c.target.as_ref())
            .filter(|position| position.stream == target.identity)
            .map(|position| position.sequence);
        if let Some(after) = known {
            match streams::after_checkpoint(
                &self.target_js,
                &self.config,
                &source,
                after,
                target.last_sequence,
            )
            .await
            {
                Ok(found) => view.after_checkpoint = found,
                Err(error) => return end_for(error, PipelineState::Failed),
            }
        }
        if needs_target_check {
            let read = if exclusive {
                streams::last_message(&self.target_js, &self.config, &source)
                    .await
                    .map(|last| view.last = Some(last))
            } else {
                streams::last_copied(&self.target_js, &self.config, &source)
                    .await
                    .map(|last| view.last_copied = last)
            };
            if let Err(error) = read {
                return end_for(error, PipelineState::Failed);
            }
        }
        let forced = checkpoint.as_ref().is_some_and(|c| c.forced.is_some());
        let computed = if self.recopy_pending && !forced {
            resume::recopy(&self.config, &source)
        } else {
            resume::compute(&self.config, checkpoint.as_ref(), &source, &view)
        };
        let resume = match computed {
            Ok(resume) => resume,
            Err(error) => return end_for(error, PipelineState::Paused),
        };
        self.count_source_gone(&resume, &source);
        let mut messages = match self.consumer(&resume).await {
            Ok(messages) => messages,
            Err(error) => return SessionEnd::Retry(error.to_string()),
        };
        let in_flight = match AckInbox::on(&self.target, &self.config.to.stream).await {
            Ok(inbox) => inbox,
            Err(error) => return SessionEnd::Retry(error.to_string()),
        };
        tracing::info!(replicator = %self.config.name, source = %source.identity, reason = %resume.reason, "replicator reading");
        let stamp = Stamp::new(
            &source.identity,
            &self.instance,
            &self.config.name,
            self.config.to.writes,
        );
        let writer = Writer::new(
            &self.config,
            in_flight,
            stamp,
            target.last_sequence,
            &self.target,
            &self.target_js,
            &self.telemetry,
        );
        let progress = Arc::new(Progress::default());
        progress.note(0, resume.done_through);
        let mut session = Session {
            source,
            target_origin: target.identity.to_string(),
            // Everything on the target now precedes this session's copies.
            watermark: Watermark::new(
                resume.done_through,
                resume.target_through.unwrap_or(target.last_sequence),
            ),
            target: TargetPosition {
                stream: target.identity,
                sequence: target.last_sequence,
            },
            saved: (u64::MAX, u64::MAX),
            already_copied: resume.already_copied,
            writer,
            held: None,
            last_delivered: resume.done_through,
            progress: progress.clone(),
            _lag: self.watch_lag(messages.pending_probe(), progress),
        };
        // A forced position, and a recopy, are used once: record them as a normal checkpoint
        // right away, so that a later session of this run resumes from there.
        self.save(&mut session);
        if session.saved != (u64::MAX, u64::MAX) {
            self.recopy_pending = false;
        }
        self.board
            .set_state(&self.config.name, PipelineState::Running, None);
        self.copy(&mut session, &mut messages).await
    }

    /// Source messages that retention or a purge removed before ferry read them.
    pub(super) fn count_source_gone(&self, resume: &Resume, source: &SourceInfo) {
        let Some(first_wanted) = resume.first_sequence() else {
            return;
        };
        if first_wanted < source.first_sequence && source.last_sequence > 0 {
            let gone = source.first_sequence - first_wanted;
            self.telemetry.skipped(SkipReason::SourceGone, gone);
            tracing::warn!(
                replicator = %self.config.name,
                from = first_wanted,
                to = source.first_sequence - 1,
                gone,
                "source messages were removed before they could be copied (retention or purge)"
            );
        }
    }

    pub(super) async fn consumer(&self, resume: &Resume) -> Result<SourceReader, SourceError> {
        let stream = self
            .source_js
            .get_stream(&self.config.from.stream)
            .await
            .map_err(|error| SourceError::Stream {
                stream: self.config.from.stream.clone(),
                error,
            })?;
        SourceReader::open(
            &self.source,
            stream,
            self.filter.server_subjects().to_vec(),
            resume.deliver,
            self.config.max_in_flight.clamp(64, 4096),
        )
        .await
        .map_err(SourceError::Open)
    }
}
