//! Delivering actions to the services that act on them. So far: the webhook endpoints that
//! `webhook` actions are addressed to ([`endpoints`], managed through `/api/webhooks`), the
//! Standard Webhooks signatures their requests carry ([`signature`]), one signed request and
//! what its answer means ([`request`], [`outcome`]) — which `POST /api/webhooks/{name}/test`
//! uses. The worker that delivers every webhook action is not built yet.

pub mod endpoints;
pub mod outcome;
pub mod request;
pub mod signature;
