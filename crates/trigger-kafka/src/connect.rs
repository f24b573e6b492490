//! The start-up connection check. librdkafka retries a refused connection forever in the background (a wrong
//! password, an untrusted certificate), so without a check a command would hang or time out far from the
//! cause. Every command that talks to Kafka, and the service, first asks for the cluster's metadata and, if
//! that fails, stops with the broker's own reason ([`KafkaError::Connect`]).

use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::ClientContext;
use std::sync::Mutex;
use std::time::Duration;

/// Keeps the first client error (the reason a connection was refused).
#[derive(Default)]
struct FirstError(Mutex<Option<String>>);

impl ClientContext for FirstError {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::log_client_error("connection-check", error.clone(), reason);
        let mut first = self.0.lock().expect("not poisoned");
        // "all brokers down" only follows the real reason.
        if first.is_none() && error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            *first = Some(format!("{error}: {reason}"));
        }
    }
}
impl ConsumerContext for FirstError {}

/// Connect (with the configured security) and read the cluster's metadata within `timeout`.
pub fn check_connection(settings: &KafkaSettings, timeout: Duration) -> Result<(), KafkaError> {
    let errs = settings.validate();
    if !errs.is_empty() {
        return Err(KafkaError::Config(errs));
    }
    let client: BaseConsumer<FirstError> =
        settings.client_config(Role::RegistryFollower).create_with_context(FirstError::default())?;
    match client.fetch_metadata(None, timeout) {
        Ok(_) => Ok(()),
        Err(e) => {
            // The client's error events (the reason) are served by polling it.
            for _ in 0..20 {
                if client.context().0.lock().expect("not poisoned").is_some() {
                    break;
                }
                let _ = client.poll(Duration::from_millis(100));
            }
            let cause = client.context().0.lock().expect("not poisoned").take().unwrap_or_else(|| e.to_string());
            Err(KafkaError::Connect { bootstrap: settings.bootstrap_servers.clone(), cause })
        }
    }
}
