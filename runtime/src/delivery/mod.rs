//! Delivering actions to the services and people that act on them. The worker ([`worker`])
//! delivers every action of a channel nudge delivers itself, through that channel's
//! [`transport::Transport`]: webhooks ([`webhook`]) to the endpoints `webhook` actions are
//! addressed to ([`endpoints`], managed through `/api/webhooks`), signed the Standard Webhooks
//! way ([`signature`]), one request and what its answer means ([`request`], [`outcome`]); e-mail
//! ([`email`]) rendered from templates ([`templates`], `/api/email-templates`) through an SMTP
//! relay, with unsubscribe links ([`unsubscribe`]). Between attempts: when to retry
//! ([`schedule`]) and when to stop sending to a target that keeps failing ([`breaker`]); every
//! attempt is logged ([`log`]).

pub mod breaker;
pub mod email;
pub mod endpoints;
pub mod fresh;
pub mod log;
pub mod outcome;
pub mod request;
pub mod schedule;
pub mod signature;
pub mod templates;
pub mod transport;
pub mod unsubscribe;
pub mod webhook;
pub mod worker;
