//! mcpgate: one OAuth 2.1 front door for many MCP servers.
//!
//! See `docs/architecture.md` for the map of these modules and the life of a request.

pub mod auth;
pub mod backend;
pub mod caller;
pub mod cli;
pub mod config;
pub mod connect;
pub mod gateway;
pub mod jsonrpc;
pub mod oauth;
pub mod policy;
pub mod route;
pub mod service;
pub mod session;
pub mod stateless;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod util;
pub mod web;
pub mod wire2026;
