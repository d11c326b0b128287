//! The authorization table of the master's own realms: what each role may do with each family
//! of URIs on the global realm and on every management realm.
//!
//! This is the only place those permissions are written. The router enforces them in one check
//! (`router::realm::State::rule`, on every CALL, REGISTER, PUBLISH and SUBSCRIBE), with the
//! roles built here; `fabric-master authz-table` prints the table, and the test suite
//! (`tests/python/test_authz_table.py`) drives the binary through every cell of it.
//!
//! A cell reads `CRPS`: Call, Register, Publish, Subscribe, `-` where denied. Every role has a
//! cell for every family, so a deny is written, not implied. A URI is governed by its most
//! specific family (exact URIs, then the longest prefix), the router's rule for rules.

use serde::Serialize;

use crate::router::{Permission, Role};
use crate::wamp::uri::MatchPolicy;
use MatchPolicy::{Exact, Prefix};

/// The role of the master's own sessions (its API backends). No client can be given it: the
/// authenticators never name it and the test suite checks that asking for it is refused.
pub const MASTER_ROLE: &str = "master";

/// The role of the configured superuser keys on the global realm. On the wire the superuser's
/// authrole is `user`, as in the reference; its permissions are this row.
pub const SUPERUSER_ROLE: &str = "superuser";

/// One family of URIs: the rules that delimit it and the URIs the test acts on.
#[derive(Debug, Serialize)]
pub struct Family {
    pub name: &'static str,
    pub what: &'static str,
    #[serde(serialize_with = "rules_as_text")]
    pub rules: &'static [(&'static str, MatchPolicy)],
    /// URIs inside this family and inside no more specific one (`{authid}`: the session's).
    pub probes: &'static [&'static str],
    /// One cell per role of the table, in the table's role order.
    pub cells: &'static [&'static str],
    /// Whether callers and publishers are disclosed to callees and subscribers here.
    pub disclose: bool,
}

#[derive(Debug, Serialize)]
pub struct Table {
    pub realm: &'static str,
    pub roles: &'static [&'static str],
    /// Roles the master holds itself; no client may join with them.
    pub internal_roles: &'static [&'static str],
    pub families: &'static [Family],
}

fn rules_as_text<S: serde::Serializer>(
    rules: &&'static [(&'static str, MatchPolicy)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(rules.len()))?;
    for (uri, policy) in rules.iter() {
        seq.serialize_element(&(uri, policy.as_str()))?;
    }
    seq.end()
}

/// The meta procedures that only read.
const META_READS: &[(&str, MatchPolicy)] = &[
    ("wamp.session.count", Exact),
    ("wamp.session.list", Exact),
    ("wamp.session.get", Exact),
    ("wamp.registration.list", Exact),
    ("wamp.registration.lookup", Exact),
    ("wamp.registration.match", Exact),
    ("wamp.registration.get", Exact),
    ("wamp.registration.list_callees", Exact),
    ("wamp.registration.count_callees", Exact),
    ("wamp.subscription.list", Exact),
    ("wamp.subscription.lookup", Exact),
    ("wamp.subscription.match", Exact),
    ("wamp.subscription.get", Exact),
    ("wamp.subscription.list_subscribers", Exact),
    ("wamp.subscription.count_subscribers", Exact),
];
const META_READ_PROBES: &[&str] = &[
    "wamp.session.count",
    "wamp.session.list",
    "wamp.session.get",
    "wamp.registration.list",
    "wamp.registration.lookup",
    "wamp.registration.match",
    "wamp.registration.get",
    "wamp.registration.list_callees",
    "wamp.registration.count_callees",
    "wamp.subscription.list",
    "wamp.subscription.lookup",
    "wamp.subscription.match",
    "wamp.subscription.get",
    "wamp.subscription.list_subscribers",
    "wamp.subscription.count_subscribers",
];

/// The meta procedures that end other sessions.
const META_KILLS: &[(&str, MatchPolicy)] = &[
    ("wamp.session.kill", Exact),
    ("wamp.session.kill_by_authid", Exact),
    ("wamp.session.kill_by_authrole", Exact),
];
const META_KILL_PROBES: &[&str] = &[
    "wamp.session.kill",
    "wamp.session.kill_by_authid",
    "wamp.session.kill_by_authrole",
];

/// The global realm `com.crossbario.fabric`: users manage their mrealms here; anonymous
/// clients see only what users publish for them.
pub const GLOBAL: Table = Table {
    realm: "global",
    roles: &[SUPERUSER_ROLE, "user", "public", MASTER_ROLE],
    internal_roles: &[MASTER_ROLE],
    families: &[
        Family {
            name: "app",
            what: "users' own procedures and topics",
            rules: &[("", Prefix)],
            probes: &["com.example.authz_probe"],
            cells: &["CRPS", "CRPS", "----", "CRPS"],
            disclose: true,
        },
        Family {
            name: "master.api",
            what: "the master's API and events: called and heard, never offered by clients",
            rules: &[("crossbarfabriccenter.", Prefix)],
            probes: &[
                "crossbarfabriccenter.authz_probe",
                "crossbarfabriccenter.domain.authz_probe",
                "crossbarfabriccenter.mrealm.authz_probe",
            ],
            cells: &["C--S", "C--S", "----", "CRPS"],
            disclose: false,
        },
        Family {
            name: "master.public",
            what: "what users offer anonymous clients",
            rules: &[("crossbarfabriccenter.public.", Prefix)],
            probes: &["crossbarfabriccenter.public.authz_probe"],
            cells: &["CRPS", "CRPS", "C--S", "CRPS"],
            disclose: true,
        },
        Family {
            name: "meta.events",
            what: "meta events (who joins, registers, subscribes) and the rest of wamp.",
            rules: &[("wamp.", Prefix)],
            probes: &["wamp.authz_probe", "wamp.session.on_join"],
            cells: &["---S", "----", "----", "---S"],
            disclose: false,
        },
        Family {
            name: "meta.read",
            what: "meta procedures that list sessions, registrations, subscriptions",
            rules: META_READS,
            probes: META_READ_PROBES,
            cells: &["C---", "----", "----", "C---"],
            disclose: false,
        },
        Family {
            name: "meta.kill",
            what: "meta procedures that end other sessions",
            rules: META_KILLS,
            probes: META_KILL_PROBES,
            cells: &["C---", "----", "----", "C---"],
            disclose: false,
        },
    ],
};

/// A management realm: its users by the role they hold on it, its paired nodes, anonymous
/// readers of its status and traces.
pub const MANAGEMENT: Table = Table {
    realm: "management",
    roles: &[
        "owner",
        "admin",
        "user",
        "guest",
        "node",
        "public",
        MASTER_ROLE,
    ],
    internal_roles: &[MASTER_ROLE],
    families: &[
        Family {
            name: "app",
            what: "what owners and admins offer on their realm",
            rules: &[("", Prefix)],
            probes: &["com.example.authz_probe"],
            cells: &["CRPS", "CRPS", "C--S", "C--S", "----", "----", "CRPS"],
            disclose: true,
        },
        Family {
            name: "master.api",
            what: "the master's API and events (users and guests only read; backends refuse them writes)",
            rules: &[("crossbarfabriccenter.", Prefix)],
            probes: &[
                "crossbarfabriccenter.authz_probe",
                "crossbarfabriccenter.remote.authz_probe",
            ],
            cells: &["C--S", "C--S", "C--S", "C--S", "----", "----", "CRPS"],
            disclose: true,
        },
        Family {
            name: "node.others",
            what: "procedures and events the nodes forward, seen from elsewhere",
            rules: &[("crossbarfabriccenter.node.", Prefix)],
            probes: &["crossbarfabriccenter.node.authz-probe-other.get_status"],
            cells: &["C--S", "C--S", "C--S", "C--S", "----", "----", "CRPS"],
            disclose: true,
        },
        Family {
            name: "node.own",
            what: "a node's own procedures and events, below its authid",
            rules: &[("crossbarfabriccenter.node.{authid}.", Prefix)],
            probes: &["crossbarfabriccenter.node.{authid}.authz_probe"],
            cells: &["C--S", "C--S", "C--S", "C--S", "CRPS", "----", "CRPS"],
            disclose: true,
        },
        Family {
            name: "node.heartbeat",
            what: "heartbeats every node publishes",
            rules: &[
                ("crossbarfabriccenter.node.on_heartbeat", Exact),
                ("crossbarfabriccenter.node.on_worker_heartbeat", Exact),
            ],
            probes: &[
                "crossbarfabriccenter.node.on_heartbeat",
                "crossbarfabriccenter.node.on_worker_heartbeat",
            ],
            cells: &["C--S", "C--S", "C--S", "C--S", "--P-", "----", "CRPS"],
            disclose: true,
        },
        Family {
            name: "mrealm.api",
            what: "the realm controller",
            rules: &[("crossbarfabriccenter.mrealm.", Prefix)],
            probes: &["crossbarfabriccenter.mrealm.authz_probe"],
            cells: &["C--S", "C--S", "C--S", "C--S", "C--S", "----", "CRPS"],
            disclose: true,
        },
        Family {
            name: "mrealm.status",
            what: "whether the master is there, and the traces whose reader roles admit the caller",
            rules: &[
                ("crossbarfabriccenter.mrealm.get_status", Exact),
                ("crossbarfabriccenter.mrealm.get_traces", Exact),
                ("crossbarfabriccenter.mrealm.get_trace", Exact),
                ("crossbarfabriccenter.mrealm.get_trace_data", Exact),
            ],
            probes: &[
                "crossbarfabriccenter.mrealm.get_status",
                "crossbarfabriccenter.mrealm.get_traces",
                "crossbarfabriccenter.mrealm.get_trace",
                "crossbarfabriccenter.mrealm.get_trace_data",
            ],
            cells: &["C--S", "C--S", "C--S", "C--S", "C--S", "C---", "CRPS"],
            disclose: true,
        },
        Family {
            name: "mrealm.tracing",
            what: "trace events",
            rules: &[("crossbarfabriccenter.mrealm.tracing.", Prefix)],
            probes: &["crossbarfabriccenter.mrealm.tracing.authz_probe"],
            cells: &["C--S", "C--S", "C--S", "C--S", "C--S", "---S", "CRPS"],
            disclose: true,
        },
        Family {
            name: "meta.events",
            what: "meta events (who joins, registers, subscribes) and the rest of wamp.",
            rules: &[("wamp.", Prefix)],
            probes: &["wamp.authz_probe", "wamp.session.on_join"],
            cells: &["---S", "---S", "----", "----", "----", "----", "---S"],
            disclose: true,
        },
        Family {
            name: "meta.read",
            what: "meta procedures that list sessions, registrations, subscriptions",
            rules: META_READS,
            probes: META_READ_PROBES,
            cells: &["C---", "C---", "----", "----", "----", "----", "C---"],
            disclose: true,
        },
        Family {
            name: "meta.kill",
            what: "meta procedures that end other sessions (nodes included)",
            rules: META_KILLS,
            probes: META_KILL_PROBES,
            cells: &["C---", "C---", "----", "----", "----", "----", "C---"],
            disclose: true,
        },
    ],
};

impl Table {
    /// The router roles of this table.
    pub fn roles(&self) -> Vec<Role> {
        (0..self.roles.len())
            .map(|i| Role {
                name: self.roles[i].to_owned(),
                permissions: self
                    .families
                    .iter()
                    .flat_map(|family| {
                        let cell = family.cells[i];
                        family.rules.iter().map(move |&(uri, policy)| {
                            permission(uri, policy, cell, family.disclose)
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn internal_roles(&self) -> Vec<String> {
        self.internal_roles.iter().map(|r| r.to_string()).collect()
    }
}

fn permission(uri: &str, policy: MatchPolicy, cell: &str, disclose: bool) -> Permission {
    let allowed = |letter: char| cell.contains(letter);
    Permission {
        uri: uri.to_owned(),
        policy,
        call: allowed('C'),
        register: allowed('R'),
        publish: allowed('P'),
        subscribe: allowed('S'),
        disclose_caller: disclose,
        disclose_publisher: disclose,
    }
}

/// Both tables, as `fabric-master authz-table` prints them.
pub fn tables() -> [&'static Table; 2] {
    [&GLOBAL, &MANAGEMENT]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Action;

    const ACTIONS: [(char, Action); 4] = [
        ('C', Action::Call),
        ('R', Action::Register),
        ('P', Action::Publish),
        ('S', Action::Subscribe),
    ];

    #[test]
    fn every_role_has_a_well_formed_cell_in_every_family() {
        for table in tables() {
            for family in table.families {
                assert_eq!(family.cells.len(), table.roles.len(), "{}", family.name);
                for cell in family.cells {
                    assert_eq!(cell.len(), 4, "{} {cell}", family.name);
                    for (i, c) in cell.chars().enumerate() {
                        assert!(c == "CRPS".as_bytes()[i] as char || c == '-', "{cell}");
                    }
                }
                assert!(!family.probes.is_empty(), "{}", family.name);
            }
        }
    }

    #[test]
    fn no_two_families_share_a_rule() {
        for table in tables() {
            let mut seen = std::collections::HashSet::new();
            for family in table.families {
                for (uri, policy) in family.rules {
                    assert!(seen.insert((uri, policy.as_str())), "{uri} twice");
                }
            }
        }
    }

    /// Every probe is governed by its own family's cell for every role, so the binary test
    /// of a probe is a test of that cell.
    #[test]
    fn each_probe_falls_in_its_own_family() {
        let authid = "authz-probe-self";
        for table in tables() {
            let roles = table.roles();
            for family in table.families {
                for probe in family.probes {
                    let uri = probe.replace(crate::router::AUTHID_PLACEHOLDER, authid);
                    for (i, role) in roles.iter().enumerate() {
                        for (letter, action) in ACTIONS {
                            let expected = family.cells[i].contains(letter);
                            let got = role.authorize_session(&uri, action, authid).is_some();
                            assert_eq!(
                                got, expected,
                                "{} {} {uri} {action:?}",
                                table.realm, role.name
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_the_master_may_offer_the_masters_api() {
        for table in tables() {
            for (i, role) in table.roles.iter().enumerate() {
                let family = table
                    .families
                    .iter()
                    .find(|f| f.name == "master.api")
                    .unwrap();
                let offers = family.cells[i].contains('R') || family.cells[i].contains('P');
                assert_eq!(offers, *role == MASTER_ROLE, "{} {role}", table.realm);
            }
        }
    }
}
