//! Delivering actions to the services that act on them. So far: the webhook endpoints that
//! `webhook` actions are addressed to ([`endpoints`], managed through `/api/webhooks`), the
//! Standard Webhooks signatures their requests carry ([`signature`]), one signed request and
//! what its answer means ([`request`], [`outcome`]) — which `POST /api/webhooks/{name}/test`
//! uses — and the decisions the delivery worker will take between attempts: when to retry
//! ([`schedule`]) and when to stop sending to an endpoint that keeps failing ([`breaker`]).
//! The worker that delivers every webhook action is not built yet.

pub mod breaker;
pub mod endpoints;
pub mod outcome;
pub mod request;
pub mod schedule;
pub mod signature;
