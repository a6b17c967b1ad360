//! The gateway and discovery against real processes' worth of parts: a
//! registry, upstream services registering themselves, and the gateway, each
//! on its own port in this test process.

mod helpers;

mod discovery;
mod resilience;
mod routing;
