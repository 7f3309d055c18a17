//! The server's and workers' logs on stderr: text for people, or one JSON object per line for a
//! log collector.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

/// Logs go to stderr, filtered by `NIGHTSHIFT_LOG` (`info` by default).
pub(crate) fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIGHTSHIFT_LOG")
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        // Spans are flattened into the event: a collector gets one object per line.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}
