//! Integration tests for `sitec balancer`: a real balancer process in front
//! of real backends (a tiny recording test server, and gunicorn), over
//! loopback only. One test binary; the groups live in `tests/balancer/`.

mod common;

#[path = "balancer/support.rs"]
mod support;

#[path = "balancer/proxying.rs"]
mod proxying;

#[path = "balancer/smuggling.rs"]
mod smuggling;

#[path = "balancer/limits.rs"]
mod limits;

#[path = "balancer/health.rs"]
mod health;

#[path = "balancer/reload.rs"]
mod reload;

#[path = "balancer/websocket.rs"]
mod websocket;

#[path = "balancer/visibility.rs"]
mod visibility;

#[path = "balancer/tls.rs"]
mod tls;

#[path = "balancer/gunicorn.rs"]
mod gunicorn;

#[path = "balancer/fuzz.rs"]
mod fuzz;
