//! The nudge service: adapters between the pure rule core (`nudge-rules`) and the world —
//! NATS JetStream in and out, the HTTP API, configuration, metrics, and the `nudge` commands.

#![forbid(unsafe_code)]

pub mod access;
pub mod backtest;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod delivered;
pub mod delivery;
pub mod http;
pub mod pipeline;
pub mod plugin;
pub mod plugin_new;
pub mod plugin_test;
pub mod profiles;
pub mod replay;
pub mod results;
pub mod rule_test;
pub mod rulestore;
pub mod rulesync;
pub mod schemas;
pub mod service;
pub mod stats;
pub mod storage;
pub mod tail;
pub mod telemetry;
pub mod timers;
pub mod topology;
pub mod traces;
pub mod up;
pub mod versioned;
pub mod watch;
