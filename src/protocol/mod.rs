//! Protocol adapters: how a request from the Functions host becomes an
//! invocation of one function, and how its reply goes back.
//!
//! * [`forward`]: `enableForwardingHttpRequest` — the host passes the client's
//!   request through unchanged (`GET /api/secrets/x`).
//! * [`payload`]: invocation payloads — the host `POST`s `/<FunctionName>` with a
//!   `{Data, Metadata}` envelope and expects `{Outputs, Logs}` back. A function
//!   falls into this mode as soon as it gains a binding besides HTTP in/out.
//!
//! The function code sees neither: it gets an [`Invocation`] and returns a
//! [`Reply`] (`crate::invocation`).
//!
//! [`Invocation`]: crate::invocation::Invocation
//! [`Reply`]: crate::invocation::Reply

pub mod forward;
pub mod payload;
