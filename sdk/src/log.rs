//! Log lines that land in nudge's log, tagged with the plugin and the event. Natively (tests)
//! they go to stderr.

use crate::guest;

pub fn debug(message: impl std::fmt::Display) {
    guest::log(guest::Level::Debug, &message.to_string());
}

pub fn info(message: impl std::fmt::Display) {
    guest::log(guest::Level::Info, &message.to_string());
}

pub fn warn(message: impl std::fmt::Display) {
    guest::log(guest::Level::Warn, &message.to_string());
}

pub fn error(message: impl std::fmt::Display) {
    guest::log(guest::Level::Error, &message.to_string());
}
