//! Routing: patterns with typed, constrained parameters; per-method handlers; mounted
//! tower services; layers.
//!
//! One job per file, the dependencies pointing one way (a request's path runs
//! through `dispatch`, which uses the rest):
//!
//! - `endpoint`: [`Endpoint`], the per-worker tower service that layers wrap, and
//!   the traits that make tower services and layers into one;
//! - `method`: [`MethodRouter`], the handlers of one path by method;
//! - `pattern`: route patterns and their parameter constraints;
//! - `builder`: [`Router`], the route table as the application builds it;
//! - `compiled`: that table compiled on a worker (per-worker services, layers
//!   applied);
//! - `dispatch`: routing one request through the compiled table.

mod builder;
mod compiled;
mod dispatch;
mod endpoint;
mod method;
mod pattern;

pub use builder::{RouteInfo, Router};
pub(crate) use compiled::Compiled;
pub(crate) use dispatch::Dispatch;
pub use endpoint::{Endpoint, EndpointLayer, IntoEndpoint};
pub use method::{MethodRouter, delete, get, head, on, options, patch, post, put};
