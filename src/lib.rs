//! fabric-master: a Crossbar.io-compatible WAMP master node.

pub mod wamp;
