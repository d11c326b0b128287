//! fabric-master: a Crossbar.io-compatible WAMP master node.

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod peer;
pub mod raft;
pub mod replica;
pub mod router;
pub mod server;
pub mod store;
pub mod transport;
pub mod wamp;
