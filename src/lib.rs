//! fabric-master: a Crossbar.io-compatible WAMP master node that runs as a cluster of
//! replicas sharing their state through Raft.
//!
//! # Map of the crate
//!
//! | module | its one job |
//! |---|---|
//! | [`wamp`] | WAMP v2 itself: messages, the three serializers, URIs, error URIs, [`wamp::CallError`], cryptosign. Pure code, no I/O. |
//! | [`clock`] | wall-clock time as records and the wire carry it. |
//! | [`metrics`] | the process's counters and histograms (Prometheus/OpenMetrics), recorded by every layer; the server adds the gauges read at scrape time. |
//! | [`store`] | the replicated state machine on redb: commands, records, the deterministic apply, reads, snapshots. |
//! | [`tls`] | mutual TLS on the peer port: loading and reloading certificates, making a CA and certificates. |
//! | [`rpc`] | the client side of the peer gRPC service: generated code, one channel per peer, wire types. |
//! | [`raft`] | openraft wiring: type config, redb log and state machine, the network (over `rpc`). |
//! | [`replica`] | the replicated state as the master uses it: propose from any replica, linearizable reads, membership, node calls routed to another replica, the presence lease. |
//! | [`transport`] | WebSocket and HTTP (`/healthz`, `/readyz`, `/metrics`) on one port, optionally over TLS with cryptosign channel bindings; per-connection byte budgets. |
//! | [`router`] | the WAMP router: realms, dealer, broker, roles, meta API, internal sessions, per-session limits and realm byte budgets; asks an [`router::authenticator::Authenticator`] who a HELLO is and hands publications to a [`router::PublicationRelay`]. Blind to Raft. |
//! | [`authz`] | the authorization table of the master's realms: every role × URI family, allow or deny; the router enforces it. |
//! | [`auth`] | the authenticators (superuser keys, users with activation codes, paired nodes), key files, activation mail. |
//! | [`relay`] | publications sent to the other replicas' subscribers. |
//! | [`peer`] | the server side of the peer gRPC service. |
//! | [`api`] | the management API: global realm and management realms, as internal callees. |
//! | [`config`] | the TOML config file and the built-in realms. |
//! | [`server`] | wires everything into a running master: `server::run(settings, listeners, shutdown)`. |
//! | [`cli`], [`client`], [`bench`] | the command line, a Rust WAMP client, the load generator. |
//!
//! # Layering
//!
//! A module uses only the modules on its left (and its own row); nothing imports back:
//!
//! ```text
//! wamp  ←  metrics  ←  every layer that records (router, transport, raft, replica, relay, server)
//! wamp, clock, store, tls  ←  rpc  ←  raft  ←  replica  ←  {auth, relay, peer}  ←  api  ←  server  ←  cli
//!        wamp, clock  ←  transport  ←  router  ←  authz  ←  {auth, config, api, server}
//!                                        router  ←  {auth, relay, api, server}
//! ```
//!
//! The router knows nothing of Raft: it defines the ports it needs (`Authenticator`,
//! `PublicationRelay`) and `auth` and `relay` implement them over the replica. `rpc` knows
//! only the generated client and the wire types, so the Raft network, the replica and the
//! CLI share it without depending on the server (`peer`). Errors are typed in the layer
//! that raises them and mapped to WAMP error URIs once, in `api::errors`.

pub mod api;
pub mod auth;
pub mod authz;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod peer;
pub mod raft;
pub mod relay;
pub mod replica;
pub mod router;
pub mod rpc;
pub mod server;
pub mod store;
pub mod tls;
pub mod transport;
pub mod wamp;
