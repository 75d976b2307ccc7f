//! Delivering actions to the services that act on them: the webhook endpoints that `webhook`
//! actions are addressed to ([`endpoints`], managed through `/api/webhooks`), the Standard
//! Webhooks signatures their requests carry ([`signature`]), one signed request and what its
//! answer means ([`request`], [`outcome`]), the decisions between attempts — when to retry
//! ([`schedule`]) and when to stop sending to an endpoint that keeps failing ([`breaker`]) — the
//! log of every attempt ([`log`]) and the worker that delivers every webhook action ([`worker`]).

pub mod breaker;
pub mod endpoints;
pub mod log;
pub mod outcome;
pub mod request;
pub mod schedule;
pub mod signature;
pub mod worker;
