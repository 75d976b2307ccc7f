//! What nudge reserves in JetStream's file store, and what an operator is told when it does not
//! fit: JetStream sets aside every stream's `max_bytes` when the stream is created, from a budget
//! (`jetstream { max_file_store }`) that by default is 75% of the disk free when the server
//! started, so a server on a nearly full disk refuses nudge's streams though they are empty.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};

use crate::config::Settings;
use crate::topology;

/// Bytes nudge's streams, buckets and plugin code store may grow to, per replica: what JetStream
/// reserves for them on each server that holds a replica.
pub fn reserved_bytes(s: &Settings) -> i64 {
    let streams: i64 = topology::stream_configs(s)
        .iter()
        .map(|config| config.max_bytes)
        .sum();
    let buckets: i64 = topology::BUCKETS
        .iter()
        .map(|bucket| topology::bucket_limits(bucket, s).0)
        .sum();
    streams + buckets + s.plugins_max_bytes
}

/// Whether JetStream refused to create a stream for want of file store budget.
fn is_out_of_storage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<CreateStreamError>().is_some_and(|e| {
            matches!(e.kind(), CreateStreamErrorKind::JetStream(js)
                if js.error_code() == ErrorCode::STORAGE_RESOURCES_EXCEEDED
                    || js.error_code() == ErrorCode::INSUFFICIENT_RESOURCES)
        })
    })
}

/// Adds to JetStream's bare "insufficient storage resources" what reserved the space and what
/// to change; other errors pass unchanged.
pub fn explain(error: anyhow::Error, stream: &str, max_bytes: i64, s: &Settings) -> anyhow::Error {
    if !is_out_of_storage(&error) {
        return error;
    }
    error.context(format!(
        "JetStream could not set aside {} for {stream}: its file store budget (`jetstream \
         {{ max_file_store }}` in the server's configuration; by default 75% of the disk free \
         when the server started) is taken. nudge's settings reserve {} in all, per replica. \
         Free disk space or raise max_file_store, or lower the *_max_bytes settings \
         (`nudge config check` lists them)",
        human_bytes(max_bytes),
        human_bytes(reserved_bytes(s)),
    ))
}

/// `17.8 GiB (19113443328 bytes)`: readable, and exact for a configuration file.
pub fn human_bytes(bytes: i64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let exact = bytes as f64;
    if exact >= GIB {
        format!("{:.1} GiB ({bytes} bytes)", exact / GIB)
    } else {
        format!("{:.1} MiB ({bytes} bytes)", exact / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservation_follows_the_settings() {
        let mut settings = Settings::default();
        let before = reserved_bytes(&settings);
        settings.events_max_bytes += 1_000;
        settings.rules_max_bytes += 1;
        // rules_max_bytes sizes every small bucket that has no setting of its own.
        let small_buckets = topology::BUCKETS
            .iter()
            .filter(|b| topology::bucket_limits(b, &settings).0 == settings.rules_max_bytes)
            .count() as i64;
        assert_eq!(reserved_bytes(&settings), before + 1_000 + small_buckets);
        assert_eq!(human_bytes(3 << 29), "1.5 GiB (1610612736 bytes)");
        assert_eq!(human_bytes(1 << 20), "1.0 MiB (1048576 bytes)");
    }
}
