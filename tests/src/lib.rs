//! Harness for the end-to-end tests: real gateway processes on loopback ports, driven over
//! real HTTP.
//!
//! # Layout
//! - [`process`]: building the binaries once and running them as child processes
//!   ([`Gateway`]), with the address each one actually bound.
//! - [`redis`]: private `redis-server` processes ([`RedisServer`]), killable and
//!   restartable.
//! - [`deployment`]: a standalone gateway or a Redis cluster behind one API, so a test
//!   proves a behaviour in both set-ups.
//! - [`nginx`]: the deployment's load balancer config, run for real in front of gateways.
//! - [`client`]: a raw Streamable HTTP client ([`RawClient`]) that shows every status,
//!   header and SSE event, for tests that check the transport itself.
//! - [`stateless`]: a raw client of protocol 2026-07-28 ([`StatelessClient`]).
//! - [`typescript`]: the official TypeScript SDK client: installing it, running scripts.
//! - [`tools`]: tools the tests provision themselves: a Node.js >= 22 (cached outside
//!   the repository) and the npm packages a folder's lock file names (`npm_ci`).

pub mod client;
pub mod deployment;
pub mod nginx;
pub mod process;
pub mod redis;
pub mod stateless;
pub mod tools;
pub mod typescript;

pub use client::{RawClient, Read, SseEvent, SseReader};
pub use deployment::{Deployment, Kind, wait_for_workers};
pub use process::{Gateway, Memory, WorkerProcess, binary, memory};
pub use redis::{ClusterSetup, RedisServer, SentinelSetup};
pub use stateless::StatelessClient;
