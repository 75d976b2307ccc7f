//! What the settings mean to each part: its limits, the policy, the retry delays, and the
//! checks of settings that must agree with each other.

use nudge_rules::experiment::results::ResultsLimits;
use nudge_rules::{Channel, Limits, Policy, StateLimits};

use super::{REPLAY_WINDOW_FACTOR, Settings};
use crate::delivery::templates::TemplateLimits;
use crate::delivery::transport::DeliveryLimits;

impl Settings {
    /// The bounds of a delivered channel's deliveries (`webhook_*`, `email_*`); `None` for the
    /// channels nudge publishes and others deliver.
    pub fn delivery_limits(&self, channel: Channel) -> Option<DeliveryLimits> {
        match channel {
            Channel::Webhook => Some(DeliveryLimits {
                max_attempts: self.webhook_max_attempts,
                retry_base_ms: self.webhook_retry_base_ms,
                retry_max_ms: self.webhook_retry_max_ms,
                breaker_failures: self.webhook_breaker_failures,
                breaker_cool_down_ms: self.webhook_breaker_cool_down_ms,
                in_flight_max: self.webhook_in_flight_max,
                target_in_flight_max: self.webhook_endpoint_in_flight_max,
                attempt_max_ms: self.webhook_timeout_max_ms,
            }),
            Channel::Email => Some(DeliveryLimits {
                max_attempts: self.email_max_attempts,
                retry_base_ms: self.email_retry_base_ms,
                retry_max_ms: self.email_retry_max_ms,
                breaker_failures: self.email_breaker_failures,
                breaker_cool_down_ms: self.email_breaker_cool_down_ms,
                in_flight_max: self.email_in_flight_max,
                // One relay: it may have every slot.
                target_in_flight_max: self.email_in_flight_max,
                attempt_max_ms: self.smtp_timeout_ms,
            }),
            Channel::Push | Channel::Personalize | Channel::Price => None,
        }
    }

    pub fn template_limits(&self) -> TemplateLimits {
        TemplateLimits {
            templates_max: self.email_templates_max,
            template_max_bytes: self.email_template_max_bytes,
            render_fuel: self.email_render_fuel,
        }
    }

    /// Bounds on the schema registry.
    pub fn schema_limits(&self) -> crate::schemas::store::SchemaLimits {
        crate::schemas::store::SchemaLimits {
            schemas_max: self.schemas_max,
            schema_max_bytes: self.schema_max_bytes,
        }
    }

    /// Where people reach this service: `public_url`, else `http://` and the address the
    /// HTTP listener is bound to (`listen` with its port resolved).
    pub fn write_key_limits(&self) -> crate::access::write_keys::Limits {
        crate::access::write_keys::Limits {
            keys_max: self.write_keys_max,
            rate_per_s: self.write_key_rate_per_s,
            burst: self.write_key_burst,
            rotation_grace_s: self.write_key_rotation_grace_s,
        }
    }

    /// `https` when nudge serves TLS itself, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn public_url(&self, bound: std::net::SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}://{bound}", self.scheme()),
        }
    }

    pub fn rule_limits(&self) -> Limits {
        Limits {
            max_operations: self.rule_max_operations,
            max_call_depth: self.rule_max_call_depth,
            max_expr_depth: self.rule_max_expr_depth,
            max_string_bytes: self.rule_max_string_bytes,
            max_array_len: self.rule_max_array_len,
            max_map_len: self.rule_max_map_len,
            max_variables: self.rule_max_variables,
            max_functions: self.rule_max_functions,
            max_actions: self.rule_max_actions,
            deadline_ms: self.rule_deadline_ms,
            max_script_bytes: self.rule_max_script_bytes,
        }
    }

    pub fn plugin_limits(&self) -> crate::plugin::PluginLimits {
        crate::plugin::PluginLimits {
            deadline_ms: self.plugin_deadline_ms,
            max_memory_bytes: self.plugin_max_memory_bytes,
            max_stack_bytes: self.plugin_max_stack_bytes,
            max_table_elements: self.plugin_max_table_elements,
            max_instances: self.plugin_max_instances,
            fuel: self.plugin_fuel,
            max_output_bytes: self.plugin_max_output_bytes,
            max_actions: self.plugin_max_actions,
            max_log_lines: self.plugin_max_log_lines,
            pool_instances: self.plugin_pool_instances,
            instance_max_calls: self.plugin_instance_max_calls.max(1),
            idle_instances: self.plugin_idle_instances,
            quarantine_after: self.plugin_quarantine_after,
            quarantine_ms: self.plugin_quarantine_ms,
            cache_dir: Some(
                self.plugin_cache_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("plugin-cache")),
            ),
        }
    }

    /// What a partition's results record keeps.
    pub fn results_limits(&self) -> ResultsLimits {
        ResultsLimits {
            retention_days: i64::from(self.results_retention_days.max(1)),
            max_versions: self.results_max_versions.max(1),
        }
    }

    pub fn state_limits(&self) -> StateLimits {
        StateLimits {
            window_max_events: self.profile_window_max_events,
            window_max_age_ms: i64::try_from(self.profile_window_max_age_s)
                .unwrap_or(i64::MAX / 1_000)
                .saturating_mul(1_000),
            max_event_types: self.profile_max_event_types,
            max_attributes: self.profile_max_attributes,
            max_attribute_bytes: self.profile_max_attribute_bytes,
            max_timers: self.profile_max_timers,
            applied_events: self.profile_applied_events,
            max_touches: self.profile_max_touches,
        }
    }

    /// The global marketing policy; an error names the setting at fault.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        for channel in self.caps.keys().chain(&self.quiet_channels) {
            if Channel::parse(channel).is_none() {
                anyhow::bail!(
                    "caps / quiet_channels: `{channel}` is not a channel ({})",
                    Channel::names()
                );
            }
        }
        if let Some(quiet) = &self.quiet_hours {
            quiet
                .validate()
                .map_err(|e| anyhow::anyhow!("quiet_hours.{e}"))?;
        }
        Ok(Policy {
            caps: self.caps.clone(),
            quiet_hours: self.quiet_hours.clone(),
            quiet_channels: self.quiet_channels.clone(),
        })
    }

    /// Delay before attempt `attempts + 1` of something that failed transiently.
    pub fn retry_delay(&self, attempts: u32) -> std::time::Duration {
        let step = attempts.max(1) as usize - 1;
        let ms = self
            .retry_backoff_ms
            .get(step)
            .or(self.retry_backoff_ms.last())
            .copied()
            .unwrap_or(1_000);
        std::time::Duration::from_millis(ms)
    }

    /// Checks the settings that must agree with each other; the error names them.
    pub fn check(&self) -> anyhow::Result<()> {
        // A partition's actions may be published again by a new owner replaying from the last
        // checkpoint: JetStream must still remember their ids by then. The longest replay starts
        // two leases (an orphaned partition) plus a checkpoint after the first publish.
        let replay_ms = 2 * self.partition_lease_ms + self.checkpoint_interval_ms;
        let needed_s = (replay_ms / 1_000).max(1) * REPLAY_WINDOW_FACTOR;
        anyhow::ensure!(
            self.actions_duplicate_window_s >= needed_s,
            "actions_duplicate_window_s ({}) must outlast a failover: at least {needed_s} s \
             with partition_lease_ms = {} and checkpoint_interval_ms = {} (a new owner \
             republishes what the last checkpoint did not cover, and JetStream drops those \
             copies only within the window)",
            self.actions_duplicate_window_s,
            self.partition_lease_ms,
            self.checkpoint_interval_ms,
        );
        anyhow::ensure!(
            self.partition_lease_ms >= 1_000,
            "partition_lease_ms ({}) must be at least 1000",
            self.partition_lease_ms
        );
        anyhow::ensure!(
            self.replicas >= 1 && self.replicas <= 5,
            "replicas ({}) must be 1 to 5",
            self.replicas
        );
        crate::connection::check(self)?;
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert and tls_key go together: set both for HTTPS, or neither"
        );
        crate::http::signed::signing_key(self.ingest_signing_secret.as_deref())?;
        anyhow::ensure!(
            self.write_key_rate_per_s >= 1 && self.write_key_burst >= 1,
            "write_key_rate_per_s ({}) and write_key_burst ({}) must be at least 1",
            self.write_key_rate_per_s,
            self.write_key_burst
        );
        // The relay's settings (URL, sender, credentials) must make a relay.
        crate::delivery::email::RelayPlan::from_settings(self)?;
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("public_url: `{url}` is not a URL: {e}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "public_url: `{url}` must be http or https"
            );
        }
        Ok(())
    }
}
