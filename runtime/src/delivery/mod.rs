//! Delivering actions to the services that act on them. So far: the webhook endpoints that
//! `webhook` actions are addressed to ([`endpoints`], managed through `/api/webhooks`), and the
//! Standard Webhooks signatures their requests carry ([`signature`]).

pub mod endpoints;
pub mod signature;
