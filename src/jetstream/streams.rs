//! The stream steps adapters, replicators and the election bucket share: look a stream up (a
//! missing one is an answer, not an error), create one when another instance may be doing the
//! same, and map the configured storage onto the server's.

use async_nats::jetstream::context::{CreateStreamError, GetStreamError};
use async_nats::jetstream::stream::{Config, StorageType, Stream};
use async_nats::jetstream::Context;

use super::answer;
use crate::config::schema::StorageKind;

/// The stream named `name`, or `None` when the server says there is none.
pub async fn find(js: &Context, name: &str) -> Result<Option<Stream>, GetStreamError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(error) if answer::is_stream_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Creates the stream `config` describes. When that fails because another instance created it
/// a moment ago (or for any reason while the stream now exists), the existing stream is returned
/// with `created: false`: the caller checks an existing stream as it would have at first sight.
pub async fn create(js: &Context, config: Config) -> Result<(Stream, bool), CreateStreamError> {
    let name = config.name.clone();
    match js.create_stream(config).await {
        Ok(stream) => Ok((stream, true)),
        Err(error) if answer::is_subject_overlap(&error) => Err(error),
        Err(error) => match js.get_stream(&name).await {
            Ok(stream) => Ok((stream, false)),
            Err(_) => Err(error),
        },
    }
}

/// The server's storage type for a configured one.
pub fn storage_type(kind: StorageKind) -> StorageType {
    match kind {
        StorageKind::File => StorageType::File,
        StorageKind::Memory => StorageType::Memory,
    }
}
