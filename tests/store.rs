//! The replicated-state domain model: commands applied to redb tables.
//!
//! Replicas that apply the same commands, however they batch their commits, must answer the
//! same and hold byte-identical state; refusals must leave no trace; every constraint refuses
//! with its spec URI; snapshots round-trip byte for byte.

use std::sync::Arc;

use fabric_master::api::errors::refusal_uri;
use fabric_master::raft::open_database;
use fabric_master::store::model::*;
use fabric_master::store::{
    AnyRecord, Applied, ApplyError, Command, Index, Kind, Reader, StatusRule, apply, snapshot,
};
use proptest::prelude::*;
use redb::{Database, Durability, ReadableDatabase, WriteTransaction};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

// ---- databases ------------------------------------------------------------------------------

struct Db {
    db: Arc<Database>,
    _dir: TempDir,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("state.redb")).unwrap();
        Db { db, _dir: dir }
    }

    fn begin(&self) -> WriteTransaction {
        let mut txn = self.db.begin_write().unwrap();
        txn.set_durability(Durability::None).unwrap();
        txn
    }

    /// Applies one command in its own transaction and commits, refused or not.
    fn run(&self, cmd: &Command) -> Applied {
        let txn = self.begin();
        let out = apply(&txn, cmd).unwrap();
        txn.commit().unwrap();
        out
    }

    #[track_caller]
    fn ok(&self, cmd: &Command) -> Value {
        match self.run(cmd) {
            Ok(v) => v,
            Err(e) => panic!("{cmd:?} was refused: {e}"),
        }
    }

    /// Runs a command that must be refused, and checks that the refusal changed nothing.
    #[track_caller]
    fn refused(&self, cmd: &Command) -> ApplyError {
        let before = self.dump();
        match self.run(cmd) {
            Ok(v) => panic!("{cmd:?} was accepted: {v}"),
            Err(e) => {
                assert!(
                    self.dump() == before,
                    "refused {cmd:?} ({e}) changed the state"
                );
                e
            }
        }
    }

    fn read(&self) -> Reader {
        Reader::new(self.db.begin_read().unwrap())
    }

    fn dump(&self) -> Vec<u8> {
        snapshot::dump(&self.db.begin_read().unwrap()).unwrap()
    }
}

/// User 1 owning management realms 1 ("realm1") and 2 ("realm2").
fn realms() -> Db {
    let db = Db::new();
    db.ok(&insert(user(1)));
    db.ok(&insert(mrealm(1, 1)));
    db.ok(&insert(mrealm(2, 1)));
    db
}

// ---- records --------------------------------------------------------------------------------

const USER: u128 = 1;
const ORG: u128 = 2;
const MREALM: u128 = 3;
const NODE: u128 = 4;
const AREALM: u128 = 5;
const ROLE: u128 = 6;
const PERM: u128 = 7;
const PRINCIPAL: u128 = 8;
const CRED: u128 = 9;
const RCLUSTER: u128 = 10;
const WGROUP: u128 = 11;
const PLACEMENT: u128 = 12;
const WCLUSTER: u128 = 13;
const WSERVICE: u128 = 14;
const TOKEN: u128 = 15;

/// Deterministic oids: the kind in the high half, the number in the low half.
fn oid(kind: u128, n: u128) -> Uuid {
    Uuid::from_u128((kind << 64) | n)
}

fn mkey(m: u128) -> String {
    oid(MREALM, m).to_string()
}

fn user(n: u128) -> User {
    user_with(n, &format!("user{n}@example.com"))
}

fn user_with(n: u128, email: &str) -> User {
    User {
        oid: oid(USER, n),
        label: None,
        description: None,
        tags: None,
        email: email.to_string(),
        registered: 1_600_000_000_000_000 + n as i64,
        pubkey: None,
    }
}

fn org(n: u128, name: &str) -> Organization {
    Organization {
        oid: oid(ORG, n),
        label: None,
        description: None,
        tags: None,
        name: name.to_string(),
        otype: Some(2),
        registered: 1,
    }
}

fn mrealm(n: u128, owner: u128) -> ManagementRealm {
    mrealm_named(n, &format!("realm{n}"), owner)
}

fn mrealm_named(n: u128, name: &str, owner: u128) -> ManagementRealm {
    ManagementRealm {
        oid: oid(MREALM, n),
        label: None,
        description: None,
        tags: None,
        name: name.to_string(),
        created: 1,
        owner: oid(USER, owner),
        cf_router_worker: None,
        cf_container_worker: None,
    }
}

fn umrole(u: u128, m: u128, roles: Vec<u8>) -> UserMrealmRole {
    UserMrealmRole {
        user_oid: oid(USER, u),
        mrealm_oid: oid(MREALM, m),
        roles,
    }
}

fn uorole(u: u128, o: u128, roles: Vec<u8>) -> UserOrganizationRole {
    UserOrganizationRole {
        user_oid: oid(USER, u),
        org_oid: oid(ORG, o),
        roles,
    }
}

fn node(n: u128, pubkey: &str) -> Node {
    Node {
        oid: oid(NODE, n),
        label: None,
        description: None,
        tags: None,
        owner_oid: None,
        pubkey: pubkey.to_string(),
        cluster_ip: None,
        mrealm_oid: None,
        authid: None,
        authextra: None,
    }
}

fn paired(n: u128, pubkey: &str, m: u128, authid: &str) -> Node {
    Node {
        mrealm_oid: Some(oid(MREALM, m)),
        authid: Some(authid.to_string()),
        ..node(n, pubkey)
    }
}

fn arealm(m: u128, n: u128, name: &str, status: &str) -> ApplicationRealm {
    ApplicationRealm {
        oid: oid(AREALM, n),
        label: None,
        description: None,
        tags: None,
        mrealm_oid: oid(MREALM, m),
        name: name.to_string(),
        status: status.to_string(),
        workergroup_oid: None,
        webcluster_oid: None,
        datamarket_oid: None,
        changed: 1,
        owner_oid: None,
        extra: Extra::new(),
    }
}

fn role(m: u128, n: u128, name: &str) -> Role {
    Role {
        oid: oid(ROLE, n),
        label: None,
        description: None,
        tags: None,
        mrealm_oid: oid(MREALM, m),
        name: name.to_string(),
        created: 1,
        owner: None,
        extra: Extra::new(),
    }
}

fn permission(m: u128, r: u128, n: u128, uri: &str) -> Permission {
    Permission {
        oid: oid(PERM, n),
        label: None,
        description: None,
        tags: None,
        mrealm_oid: oid(MREALM, m),
        role_oid: oid(ROLE, r),
        uri: uri.to_string(),
        uri_check_level: None,
        match_: Some("exact".to_string()),
        allow_call: true,
        allow_register: false,
        allow_publish: true,
        allow_subscribe: false,
        disclose_caller: false,
        disclose_publisher: false,
        cache: false,
        created: 1,
        owner: None,
    }
}

fn principal(m: u128, a: u128, n: u128, r: u128, authid: &str) -> Principal {
    Principal {
        oid: oid(PRINCIPAL, n),
        label: None,
        description: None,
        tags: None,
        mrealm_oid: oid(MREALM, m),
        arealm_oid: oid(AREALM, a),
        authid: authid.to_string(),
        role_oid: oid(ROLE, r),
        modified: 1,
        authextra: None,
    }
}

fn credential(m: u128, a: u128, p: u128, n: u128, method: &str) -> Credential {
    Credential {
        oid: oid(CRED, n),
        mrealm_oid: oid(MREALM, m),
        arealm_oid: oid(AREALM, a),
        principal_oid: oid(PRINCIPAL, p),
        created: 1,
        authmethod: method.to_string(),
        realm: format!("app{a}"),
        authid: format!("principal{p}"),
        authconfig: None,
        extra: Extra::new(),
    }
}

fn association(m: u128, a: u128, r: u128) -> ArealmRoleAssociation {
    ArealmRoleAssociation {
        mrealm_oid: oid(MREALM, m),
        arealm_oid: oid(AREALM, a),
        role_oid: oid(ROLE, r),
        config: None,
    }
}

fn rcluster(m: u128, n: u128, name: &str, status: &str) -> RouterCluster {
    RouterCluster {
        oid: oid(RCLUSTER, n),
        label: None,
        description: None,
        tags: None,
        mrealm_oid: oid(MREALM, m),
        name: name.to_string(),
        status: status.to_string(),
        owner_oid: None,
        changed: 1,
        extra: Extra::new(),
    }
}

fn rmember(m: u128, c: u128, n: u128) -> RouterClusterNodeMembership {
    RouterClusterNodeMembership {
        mrealm_oid: oid(MREALM, m),
        cluster_oid: oid(RCLUSTER, c),
        node_oid: oid(NODE, n),
        softlimit: None,
        hardlimit: None,
    }
}

fn wgroup(m: u128, c: u128, n: u128, name: &str) -> RouterWorkerGroup {
    RouterWorkerGroup {
        oid: oid(WGROUP, n),
        label: None,
        description: None,
        tags: None,
        mrealm_oid: oid(MREALM, m),
        cluster_oid: oid(RCLUSTER, c),
        name: name.to_string(),
        scale: 1,
        status: "STOPPED".to_string(),
        changed: 1,
    }
}

fn placement(m: u128, c: u128, g: u128, n: u128, nd: u128) -> RouterWorkerGroupClusterPlacement {
    RouterWorkerGroupClusterPlacement {
        oid: oid(PLACEMENT, n),
        mrealm_oid: oid(MREALM, m),
        worker_group_oid: oid(WGROUP, g),
        cluster_oid: oid(RCLUSTER, c),
        node_oid: oid(NODE, nd),
        worker_name: format!("rw{n}"),
        status: "STOPPED".to_string(),
        changed: 1,
        tcp_listening_port: None,
    }
}

fn wcluster(m: u128, n: u128, name: &str, status: &str) -> WebCluster {
    serde_json::from_value(json!({
        "oid": oid(WCLUSTER, n),
        "mrealm_oid": oid(MREALM, m),
        "name": name,
        "status": status,
        "changed": 1,
        "tcp_port": 8080,
    }))
    .unwrap()
}

fn wmember(m: u128, c: u128, n: u128) -> WebClusterNodeMembership {
    WebClusterNodeMembership {
        mrealm_oid: oid(MREALM, m),
        cluster_oid: oid(WCLUSTER, c),
        node_oid: oid(NODE, n),
        parallel: None,
        standby: None,
    }
}

fn webservice(m: u128, c: u128, n: u128, path: &str) -> WebService {
    WebService {
        oid: oid(WSERVICE, n),
        label: None,
        description: None,
        tags: None,
        mrealm_oid: oid(MREALM, m),
        webcluster_oid: oid(WCLUSTER, c),
        path: path.to_string(),
        service_type: "static".to_string(),
        extra: Extra::new(),
    }
}

fn trace(m: u128, id: &str) -> Trace {
    Trace {
        mrealm_oid: oid(MREALM, m),
        trace_id: id.to_string(),
        traced_workers: vec![],
        trace_options: None,
        eligible_reader_roles: None,
        exclude_reader_roles: None,
        status: "stopped".to_string(),
        changed: None,
        changed_by: None,
    }
}

fn docs(m: u128, object: Uuid, docs: Value) -> Docs {
    Docs {
        mrealm_oid: oid(MREALM, m),
        oid: object,
        otype: "arealm".to_string(),
        docs,
        modified: 1,
    }
}

fn presence(n: u128, m: u128, replica: u64, session: u64) -> Presence {
    Presence {
        node_oid: oid(NODE, n),
        mrealm_oid: oid(MREALM, m),
        authid: format!("node{n}"),
        replica_id: replica,
        session_id: session,
        since: 1,
        run: 0,
    }
}

fn token(n: u128, email: &str, pubkey: &str) -> ActivationToken {
    ActivationToken {
        oid: oid(TOKEN, n),
        atype: TOKEN_REGISTRATION,
        status: TOKEN_PENDING,
        created: 1,
        completed: None,
        code: format!("CODE-{n}"),
        email: email.to_string(),
        pubkey: pubkey.to_string(),
    }
}

// ---- commands -------------------------------------------------------------------------------

trait Wrap {
    fn wrap(self) -> AnyRecord;
}

macro_rules! wrap {
    ($($t:ident),*) => {$(
        impl Wrap for $t {
            fn wrap(self) -> AnyRecord {
                AnyRecord::$t(self)
            }
        }
    )*};
}

wrap!(
    Organization,
    User,
    ActivationToken,
    ManagementRealm,
    UserMrealmRole,
    UserOrganizationRole,
    Node,
    ApplicationRealm,
    Role,
    Permission,
    Principal,
    Credential,
    ArealmRoleAssociation,
    RouterCluster,
    RouterClusterNodeMembership,
    RouterWorkerGroup,
    RouterWorkerGroupClusterPlacement,
    WebCluster,
    WebClusterNodeMembership,
    WebService,
    Trace,
    Presence,
    Docs
);

fn insert(r: impl Wrap) -> Command {
    Command::Insert { record: r.wrap() }
}

fn upsert(r: impl Wrap) -> Command {
    Command::Upsert { record: r.wrap() }
}

fn delete(kind: Kind, key: &str, cascade: bool) -> Command {
    Command::Delete {
        kind,
        key: key.to_string(),
        cascade,
    }
}

fn modify(kind: Kind, key: &str, delta: Value, status_rule: Option<StatusRule>) -> Command {
    Command::Modify {
        kind,
        key: key.to_string(),
        delta: delta.as_object().expect("a delta is an object").clone(),
        status_rule,
    }
}

fn pair(n: u128, pubkey: &str, m: u128, authid: &str) -> Command {
    Command::PairNode {
        node: paired(n, pubkey, m, authid),
    }
}

fn add_group(
    group: RouterWorkerGroup,
    placements: Vec<RouterWorkerGroupClusterPlacement>,
) -> Command {
    Command::AddWorkerGroup { group, placements }
}

fn issue(t: ActivationToken) -> Command {
    Command::IssueActivationToken { token: t }
}

fn activate(n: u128, completed: i64, new_user: Option<User>) -> Command {
    Command::ActivateToken {
        token_oid: oid(TOKEN, n),
        completed,
        new_user,
    }
}

fn join(n: u128, m: u128, replica: u64, session: u64) -> Command {
    Command::PresenceJoin {
        presence: presence(n, m, replica, session),
    }
}

fn leave(n: u128, session: u64) -> Command {
    Command::PresenceLeave {
        node_oid: oid(NODE, n),
        session_id: session,
    }
}

fn replica_prefix(id: u64) -> String {
    format!("{id:020}/")
}

#[track_caller]
fn assert_taken(e: &ApplyError, kind: Kind, index: Index, value: &str) {
    assert_eq!(
        *e,
        ApplyError::AlreadyExists {
            kind,
            index,
            value: value.to_string(),
        }
    );
    assert_eq!(refusal_uri(e), "crossbar.error.already_exists");
}

// ---- determinism (property) -----------------------------------------------------------------

const STATUS: [&str; 3] = ["STOPPED", "RUNNING", "NONE"];
const OPS: u8 = 30;

/// A fixed opening, so that random commands mostly meet existing parents.
fn opening() -> Vec<Command> {
    vec![
        insert(user_with(0, "e0@x")),
        insert(user_with(1, "e1@x")),
        insert(mrealm_named(0, "realm0", 0)),
        insert(mrealm_named(1, "realm1", 1)),
        insert(org(0, "org0")),
        pair(0, "pk0", 0, "edge0"),
        insert(arealm(0, 0, "app0", "STOPPED")),
        insert(role(0, 0, "role0")),
        insert(principal(0, 0, 0, 0, "user0")),
        insert(rcluster(0, 0, "cluster0", "STOPPED")),
        insert(wcluster(0, 0, "web0", "STOPPED")),
        issue(token(0, "e2@x", "upk0")),
    ]
}

/// A command from small pools of oids and names, so that they collide and refer to each other.
fn random_command(sel: u8, a: [u8; 6]) -> Command {
    let p = |i: usize, n: u8| u128::from(a[i] % n);
    let m = p(0, 3);
    let status = STATUS[usize::from(a[3] % 3)];
    match sel {
        0 => insert(User {
            pubkey: (a[2] % 4 != 3).then(|| format!("upk{}", a[2] % 4)),
            ..user_with(p(0, 3), &format!("e{}@x", p(1, 3)))
        }),
        1 => insert(org(p(0, 2), &format!("org{}", p(1, 2)))),
        2 => insert(mrealm_named(m, &format!("realm{}", p(1, 3)), p(2, 3))),
        3 => upsert(umrole(p(1, 3), m, vec![a[2] % 4 + 1])),
        4 => upsert(uorole(p(1, 3), p(0, 2), vec![a[2] % 4 + 1])),
        5 => {
            let mut n = paired(
                p(1, 3),
                &format!("pk{}", p(2, 3)),
                m,
                &format!("edge{}", p(3, 2)),
            );
            if a[4].is_multiple_of(8) {
                n.authid = None;
            }
            Command::PairNode { node: n }
        }
        6 => Command::UnpairNode {
            oid: oid(NODE, p(1, 3)),
        },
        7 => insert(node(p(1, 3), &format!("pk{}", p(2, 3)))),
        8 => insert(arealm(m, p(1, 3), &format!("app{}", p(2, 2)), status)),
        9 => insert(role(m, p(1, 3), &format!("role{}", p(2, 2)))),
        10 => insert(permission(
            m,
            p(1, 3),
            p(2, 3),
            &format!("com.example.{}", p(4, 2)),
        )),
        11 => insert(principal(
            m,
            p(1, 3),
            p(2, 3),
            p(4, 3),
            &format!("user{}", p(5, 2)),
        )),
        12 => insert(credential(
            m,
            p(1, 3),
            p(2, 3),
            p(4, 2),
            ["ticket", "wampcra"][usize::from(a[5] % 2)],
        )),
        13 => insert(association(m, p(1, 3), p(2, 3))),
        14 => insert(rcluster(m, p(1, 2), &format!("cluster{}", p(2, 2)), status)),
        15 => insert(rmember(m, p(1, 2), p(2, 3))),
        16 => {
            let (c, g) = (p(1, 2), p(2, 3));
            // With step 0 every placement has the same oid: a duplicate inside one command.
            let step = u128::from(a[4] / 3 % 2);
            let placements = (0..u128::from(a[4] % 3))
                .map(|i| {
                    let nd = (u128::from(a[5] / 4) + i) % 3;
                    placement(m, c, g, (p(5, 4) + i * step) % 4, nd)
                })
                .collect();
            add_group(wgroup(m, c, g, &format!("wg{}", p(3, 2))), placements)
        }
        17 => insert(wcluster(m, p(1, 2), &format!("web{}", p(2, 2)), status)),
        18 => insert(wmember(m, p(1, 2), p(2, 3))),
        19 => insert(webservice(m, p(1, 2), p(2, 3), &format!("path{}", p(4, 2)))),
        20 => insert(trace(m, &format!("t{}", p(1, 2)))),
        21 | 22 => {
            let (kind, key) = target(a[1], m, p(2, 3), p(4, 3));
            delete(kind, &key, a[5].is_multiple_of(2))
        }
        23 => delete(Kind::ManagementRealm, &mkey(m), a[1].is_multiple_of(2)),
        24 => random_modify(a),
        25 => issue(token(
            p(0, 3),
            &format!("e{}@x", p(1, 3)),
            &format!("upk{}", p(2, 2)),
        )),
        26 => activate(
            p(0, 3),
            i64::from(a[4]),
            (!a[1].is_multiple_of(3)).then(|| user_with(p(2, 3), &format!("e{}@x", p(3, 3)))),
        ),
        27 => join(p(1, 3), m, u64::from(a[2] % 2), u64::from(a[3] % 3)),
        28 => leave(p(1, 3), u64::from(a[3] % 3)),
        _ => Command::PresenceDropReplica {
            replica_id: u64::from(a[2] % 2),
        },
    }
}

/// The kind and key of an object that may or may not exist.
fn target(k: u8, m: u128, x: u128, y: u128) -> (Kind, String) {
    match k % 14 {
        0 => (Kind::User, oid(USER, x).to_string()),
        1 => (Kind::Organization, oid(ORG, x % 2).to_string()),
        2 => (Kind::Node, oid(NODE, x).to_string()),
        3 => (Kind::ApplicationRealm, arealm(m, x, "", "").key()),
        4 => (Kind::Role, role(m, x, "").key()),
        5 => (Kind::Permission, permission(m, x, y, "").key()),
        6 => (Kind::Principal, principal(m, x, y, 0, "").key()),
        7 => (Kind::Credential, credential(m, 0, x, y % 2, "").key()),
        8 => (Kind::RouterCluster, rcluster(m, x % 2, "", "").key()),
        9 => (Kind::RouterWorkerGroup, wgroup(m, x % 2, y, "").key()),
        10 => (Kind::WebCluster, wcluster(m, x % 2, "", "").key()),
        11 => (Kind::WebService, webservice(m, x % 2, y, "").key()),
        12 => (Kind::UserMrealmRole, umrole(x, m, vec![]).key()),
        _ => (Kind::ActivationToken, oid(TOKEN, x).to_string()),
    }
}

fn random_modify(a: [u8; 6]) -> Command {
    let m = u128::from(a[0] % 3);
    let x = u128::from(a[2] % 3);
    let start = || Some(StatusRule::StartFrom(vec!["STOPPED".into(), "NONE".into()]));
    let stop = || Some(StatusRule::StopFrom(vec!["RUNNING".into()]));
    let arealm_key = arealm(m, x, "", "").key();
    let (kind, key, delta, rule) = match a[1] % 9 {
        0 => (
            Kind::ApplicationRealm,
            arealm_key,
            json!({"status": "RUNNING"}),
            start(),
        ),
        1 => (
            Kind::ApplicationRealm,
            arealm_key,
            json!({"status": "STOPPED"}),
            stop(),
        ),
        2 => (
            Kind::RouterCluster,
            rcluster(m, x % 2, "", "").key(),
            json!({"status": "RUNNING"}),
            start(),
        ),
        3 => (
            Kind::WebCluster,
            wcluster(m, x % 2, "", "").key(),
            json!({"status": "STOPPED"}),
            stop(),
        ),
        4 => (
            Kind::Role,
            role(m, x, "").key(),
            json!({"name": format!("role{}", a[3] % 2)}),
            None,
        ),
        // Moves the role to another realm unless it is the same one: refused.
        5 => (
            Kind::Role,
            role(m, x, "").key(),
            json!({"mrealm_oid": mkey(u128::from(a[3] % 3))}),
            None,
        ),
        6 => (
            Kind::User,
            oid(USER, x).to_string(),
            json!({"email": format!("e{}@x", a[3] % 3)}),
            None,
        ),
        7 => {
            let delta = if a[3].is_multiple_of(2) {
                json!({"status": 5})
            } else {
                json!({"enable_meta_api": a[4].is_multiple_of(2)})
            };
            (Kind::ApplicationRealm, arealm_key, delta, None)
        }
        _ => (
            Kind::Node,
            oid(NODE, x).to_string(),
            json!({"cluster_ip": format!("10.0.0.{}", a[3] % 3)}),
            None,
        ),
    };
    modify(kind, &key, delta, rule)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replicas_agree_however_they_batch(
        ops in prop::collection::vec((0u8..OPS, prop::array::uniform6(any::<u8>())), 0..60),
        cuts in prop::collection::vec(any::<bool>(), 80),
    ) {
        replay(&ops, &cuts)?;
    }
}

/// Applies the opening and `ops` to two replicas, committing after every command on one and
/// after the commands marked in `cuts` on the other.
fn replay(ops: &[(u8, [u8; 6])], cuts: &[bool]) -> Result<(), TestCaseError> {
    let mut cmds = opening();
    cmds.extend(ops.iter().map(|(sel, args)| random_command(*sel, *args)));

    // Replica A commits after every command and checks that refusals leave no trace.
    let a = Db::new();
    let mut a_results = Vec::new();
    let mut a_dumps = Vec::new();
    let mut prev = a.dump();
    for (i, cmd) in cmds.iter().enumerate() {
        // Commands travel through the raft log as JSON.
        let wire: Command = serde_json::from_slice(&serde_json::to_vec(cmd).unwrap()).unwrap();
        prop_assert_eq!(&wire, cmd);
        let out = a.run(cmd);
        let now = a.dump();
        if let Err(e) = &out {
            prop_assert!(
                now == prev,
                "refused command {} ({:?}: {}) changed the state",
                i,
                cmd,
                e
            );
        }
        a_results.push(out);
        a_dumps.push(now.clone());
        prev = now;
    }

    // Replica B applies the same commands in batches of random size.
    let b = Db::new();
    let mut b_results = Vec::new();
    let mut txn: Option<WriteTransaction> = None;
    for (i, cmd) in cmds.iter().enumerate() {
        let t = txn.get_or_insert_with(|| b.begin());
        b_results.push(apply(t, cmd).unwrap());
        if cuts[i % cuts.len()] || i + 1 == cmds.len() {
            txn.take().unwrap().commit().unwrap();
            prop_assert!(
                b.dump() == a_dumps[i],
                "replicas differ after command {}",
                i
            );
        }
    }

    prop_assert_eq!(&a_results, &b_results);
    prop_assert!(a.dump() == b.dump(), "final dumps differ");
    Ok(())
}

// ---- constraints ----------------------------------------------------------------------------

#[test]
fn inserting_an_existing_key_is_a_duplicate() {
    let db = realms();
    let e = db.refused(&insert(user_with(1, "someone-else@example.com")));
    assert_eq!(
        e,
        ApplyError::Duplicate {
            kind: Kind::User,
            key: oid(USER, 1).to_string(),
        }
    );
    assert_eq!(refusal_uri(&e), "crossbar.error.already_exists");

    // Records without unique lookups are refused by key alone.
    db.ok(&insert(arealm(1, 1, "app", "STOPPED")));
    db.ok(&insert(role(1, 1, "role")));
    db.ok(&insert(association(1, 1, 1)));
    let e = db.refused(&insert(association(1, 1, 1)));
    assert_eq!(
        e,
        ApplyError::Duplicate {
            kind: Kind::ArealmRoleAssociation,
            key: association(1, 1, 1).key(),
        }
    );
    // An upsert of the same key is fine.
    db.ok(&upsert(ArealmRoleAssociation {
        config: Some(json!({"x": 1})),
        ..association(1, 1, 1)
    }));
}

#[test]
fn organization_names_are_unique() {
    let db = Db::new();
    db.ok(&insert(org(1, "acme")));
    let e = db.refused(&insert(org(2, "acme")));
    assert_taken(&e, Kind::Organization, Index::OrganizationByName, "acme");
    db.ok(&insert(org(3, "other")));
    let found = db
        .read()
        .lookup::<Organization>(Index::OrganizationByName, "acme")
        .unwrap();
    assert_eq!(found.unwrap().oid, oid(ORG, 1));
}

#[test]
fn user_emails_and_pubkeys_are_unique() {
    let db = Db::new();
    db.ok(&insert(user_with(1, "a@example.com")));
    let e = db.refused(&insert(user_with(2, "a@example.com")));
    assert_taken(&e, Kind::User, Index::UserByEmail, "a@example.com");

    db.ok(&insert(User {
        pubkey: Some("key".into()),
        ..user_with(3, "b@example.com")
    }));
    let e = db.refused(&insert(User {
        pubkey: Some("key".into()),
        ..user_with(4, "c@example.com")
    }));
    assert_taken(&e, Kind::User, Index::UserByPubkey, "key");

    // Modify is checked the same way.
    let e = db.refused(&modify(
        Kind::User,
        &oid(USER, 3).to_string(),
        json!({"email": "a@example.com"}),
        None,
    ));
    assert_taken(&e, Kind::User, Index::UserByEmail, "a@example.com");
}

#[test]
fn mrealm_names_are_unique() {
    let db = realms();
    let e = db.refused(&insert(mrealm_named(3, "realm1", 1)));
    assert_taken(&e, Kind::ManagementRealm, Index::MrealmByName, "realm1");
}

#[test]
fn node_pubkeys_are_unique() {
    let db = Db::new();
    db.ok(&insert(node(1, "pk")));
    let e = db.refused(&insert(node(2, "pk")));
    assert_taken(&e, Kind::Node, Index::NodeByPubkey, "pk");
}

#[test]
fn node_authids_are_unique_within_a_realm() {
    let db = realms();
    db.ok(&pair(1, "pk1", 1, "edge"));
    let e = db.refused(&pair(2, "pk2", 1, "edge"));
    let taken = format!("{}/edge", mkey(1));
    assert_taken(&e, Kind::Node, Index::NodeByAuthid, &taken);
    // The same authid in another realm is fine.
    db.ok(&pair(3, "pk3", 2, "edge"));
    // Pairing a known unpaired node under a taken authid is refused too.
    db.ok(&insert(node(4, "pk4")));
    let e = db.refused(&pair(9, "pk4", 1, "edge"));
    assert_taken(&e, Kind::Node, Index::NodeByAuthid, &taken);
}

#[test]
fn arealm_names_are_unique_within_a_realm() {
    let db = realms();
    db.ok(&insert(arealm(1, 1, "app", "STOPPED")));
    let e = db.refused(&insert(arealm(1, 2, "app", "STOPPED")));
    assert_taken(
        &e,
        Kind::ApplicationRealm,
        Index::ArealmByName,
        &format!("{}/app", mkey(1)),
    );
    db.ok(&insert(arealm(2, 3, "app", "STOPPED")));
}

#[test]
fn role_names_are_unique_within_a_realm() {
    let db = realms();
    db.ok(&insert(role(1, 1, "admin")));
    let e = db.refused(&insert(role(1, 2, "admin")));
    assert_taken(
        &e,
        Kind::Role,
        Index::RoleByName,
        &format!("{}/admin", mkey(1)),
    );
    db.ok(&insert(role(2, 3, "admin")));
    // Renaming onto a taken name is refused as well.
    db.ok(&insert(role(1, 4, "guest")));
    let e = db.refused(&modify(
        Kind::Role,
        &role(1, 4, "").key(),
        json!({"name": "admin"}),
        None,
    ));
    assert_taken(
        &e,
        Kind::Role,
        Index::RoleByName,
        &format!("{}/admin", mkey(1)),
    );
}

#[test]
fn principal_authids_are_unique_within_an_arealm() {
    let db = realms();
    db.ok(&insert(arealm(1, 1, "app1", "STOPPED")));
    db.ok(&insert(arealm(1, 2, "app2", "STOPPED")));
    db.ok(&insert(role(1, 1, "role")));
    db.ok(&insert(principal(1, 1, 1, 1, "joe")));
    let e = db.refused(&insert(principal(1, 1, 2, 1, "joe")));
    let value = format!("{}/{}/joe", mkey(1), oid(AREALM, 1));
    assert_taken(&e, Kind::Principal, Index::PrincipalByAuthid, &value);
    db.ok(&insert(principal(1, 2, 3, 1, "joe")));
}

#[test]
fn worker_group_names_are_unique_within_a_cluster() {
    let db = realms();
    db.ok(&insert(rcluster(1, 1, "c1", "STOPPED")));
    db.ok(&insert(rcluster(1, 2, "c2", "STOPPED")));
    db.ok(&add_group(wgroup(1, 1, 1, "wg"), vec![]));
    let e = db.refused(&add_group(wgroup(1, 1, 2, "wg"), vec![]));
    let value = format!("{}/{}/wg", mkey(1), oid(RCLUSTER, 1));
    assert_taken(
        &e,
        Kind::RouterWorkerGroup,
        Index::WorkerGroupByName,
        &value,
    );
    db.ok(&add_group(wgroup(1, 2, 3, "wg"), vec![]));
}

#[test]
fn webservice_paths_are_unique_within_a_cluster() {
    let db = realms();
    db.ok(&insert(wcluster(1, 1, "w1", "STOPPED")));
    db.ok(&insert(wcluster(1, 2, "w2", "STOPPED")));
    db.ok(&insert(webservice(1, 1, 1, "info")));
    let e = db.refused(&insert(webservice(1, 1, 2, "info")));
    let value = format!("{}/{}/info", mkey(1), oid(WCLUSTER, 1));
    assert_taken(&e, Kind::WebService, Index::WebServiceByPath, &value);
    db.ok(&insert(webservice(1, 2, 3, "info")));
}

#[test]
fn missing_parents_are_refused() {
    let db = realms();
    let e = db.refused(&insert(permission(1, 1, 1, "com.example")));
    assert_eq!(
        e,
        ApplyError::NoSuchObject {
            kind: Kind::Role,
            key: role(1, 1, "").key(),
        }
    );
    assert_eq!(refusal_uri(&e), "crossbar.error.no_such_object");

    db.ok(&insert(role(1, 1, "role")));
    // A role of another realm is no parent.
    let e = db.refused(&insert(permission(2, 1, 1, "com.example")));
    assert_eq!(
        e,
        ApplyError::NoSuchObject {
            kind: Kind::Role,
            key: role(2, 1, "").key(),
        }
    );

    let e = db.refused(&insert(principal(1, 1, 1, 1, "joe")));
    assert_eq!(
        e,
        ApplyError::NoSuchObject {
            kind: Kind::ApplicationRealm,
            key: arealm(1, 1, "", "").key(),
        }
    );

    let e = db.refused(&insert(mrealm(3, 9)));
    assert_eq!(
        e,
        ApplyError::NoSuchObject {
            kind: Kind::User,
            key: oid(USER, 9).to_string(),
        }
    );

    // Deleting or modifying what is not there.
    let e = db.refused(&delete(Kind::Role, &role(1, 2, "").key(), true));
    assert_eq!(refusal_uri(&e), "crossbar.error.no_such_object");
    let e = db.refused(&modify(
        Kind::Role,
        &role(1, 2, "").key(),
        json!({"name": "x"}),
        None,
    ));
    assert_eq!(refusal_uri(&e), "crossbar.error.no_such_object");
}

#[test]
fn deleting_a_realm_with_paired_nodes_needs_cascade() {
    let db = realms();
    db.ok(&pair(1, "pk1", 1, "edge1"));
    let e = db.refused(&delete(Kind::ManagementRealm, &mkey(1), false));
    assert_eq!(
        e,
        ApplyError::DependentObjects {
            kind: Kind::ManagementRealm,
            key: mkey(1),
            dependent: Kind::Node,
            count: 1,
        }
    );
    assert_eq!(refusal_uri(&e), "crossbar.error.dependent_objects");

    // A realm without nodes goes without cascade.
    let out = db.ok(&delete(Kind::ManagementRealm, &mkey(2), false));
    assert_eq!(out["name"], "realm2");
    assert_eq!(out["unpaired"], json!([]));
}

#[test]
fn deleting_a_role_in_use_needs_cascade() {
    let db = realms();
    let key = role(1, 1, "").key();
    db.ok(&insert(arealm(1, 1, "app", "STOPPED")));
    db.ok(&insert(role(1, 1, "role")));
    db.ok(&insert(permission(1, 1, 1, "com.example.a")));
    db.ok(&insert(principal(1, 1, 1, 1, "joe")));
    db.ok(&insert(credential(1, 1, 1, 1, "ticket")));
    db.ok(&insert(association(1, 1, 1)));

    let e = db.refused(&delete(Kind::Role, &key, false));
    assert_eq!(
        e,
        ApplyError::DependentObjects {
            kind: Kind::Role,
            key: key.clone(),
            dependent: Kind::Principal,
            count: 2,
        }
    );
    assert_eq!(refusal_uri(&e), "crossbar.error.dependent_objects");

    db.ok(&delete(Kind::Role, &key, true));
    let r = db.read();
    assert!(r.get::<Role>(&key).unwrap().is_none());
    for kind in [
        Kind::Role,
        Kind::Permission,
        Kind::Principal,
        Kind::Credential,
    ] {
        assert_eq!(r.count(kind).unwrap(), 0, "{kind} left behind");
    }
    assert_eq!(r.count(Kind::ArealmRoleAssociation).unwrap(), 0);
    assert_eq!(r.count(Kind::ApplicationRealm).unwrap(), 1);
    let m = mkey(1);
    for index in [
        Index::RoleByName,
        Index::PermissionByUri,
        Index::PrincipalByAuthid,
        Index::CredentialByMethod,
    ] {
        assert!(
            r.index_keys(index, &format!("{m}/")).unwrap().is_empty(),
            "{index} left behind"
        );
    }
}

#[test]
fn deleting_an_organization_with_members_needs_cascade() {
    let db = Db::new();
    db.ok(&insert(user(1)));
    db.ok(&insert(org(1, "acme")));
    db.ok(&upsert(uorole(1, 1, vec![ROLE_OWNER])));
    let key = oid(ORG, 1).to_string();
    let e = db.refused(&delete(Kind::Organization, &key, false));
    assert_eq!(
        e,
        ApplyError::DependentObjects {
            kind: Kind::Organization,
            key: key.clone(),
            dependent: Kind::UserOrganizationRole,
            count: 1,
        }
    );
    db.ok(&delete(Kind::Organization, &key, true));
    let r = db.read();
    assert_eq!(r.count(Kind::UserOrganizationRole).unwrap(), 0);
    let prefix = format!("{}/", oid(USER, 1));
    assert!(
        r.index_keys(Index::OrganizationRoleByUser, &prefix)
            .unwrap()
            .is_empty()
    );
    assert!(r.get::<User>(&oid(USER, 1).to_string()).unwrap().is_some());
}

#[test]
fn deleting_a_realm_owner_needs_cascade() {
    let db = realms();
    let e = db.refused(&delete(Kind::User, &oid(USER, 1).to_string(), false));
    assert_eq!(
        e,
        ApplyError::DependentObjects {
            kind: Kind::User,
            key: oid(USER, 1).to_string(),
            dependent: Kind::ManagementRealm,
            count: 2,
        }
    );
}

#[test]
fn cascading_realm_delete_unpairs_nodes_and_removes_everything_scoped() {
    let db = realms();
    let (m, other) = (mkey(1), mkey(2));
    db.ok(&insert(user(2)));
    db.ok(&upsert(umrole(2, 1, vec![ROLE_ADMIN])));
    db.ok(&upsert(umrole(2, 2, vec![ROLE_GUEST])));
    db.ok(&pair(1, "pk1", 1, "edge1"));
    db.ok(&pair(2, "pk2", 1, "edge2"));
    db.ok(&pair(3, "pk3", 2, "edge1"));
    db.ok(&join(1, 1, 1, 100));
    db.ok(&join(3, 2, 1, 101));
    db.ok(&insert(arealm(1, 1, "app", "STOPPED")));
    db.ok(&insert(role(1, 1, "role")));
    db.ok(&insert(permission(1, 1, 1, "com.example")));
    db.ok(&insert(principal(1, 1, 1, 1, "joe")));
    db.ok(&insert(credential(1, 1, 1, 1, "ticket")));
    db.ok(&insert(association(1, 1, 1)));
    db.ok(&insert(rcluster(1, 1, "cluster", "STOPPED")));
    db.ok(&insert(rmember(1, 1, 1)));
    db.ok(&add_group(
        wgroup(1, 1, 1, "wg"),
        vec![placement(1, 1, 1, 1, 1), placement(1, 1, 1, 2, 2)],
    ));
    db.ok(&insert(wcluster(1, 1, "web", "STOPPED")));
    db.ok(&insert(wmember(1, 1, 2)));
    db.ok(&insert(webservice(1, 1, 1, "info")));
    db.ok(&insert(trace(1, "t1")));
    db.ok(&upsert(docs(1, oid(AREALM, 1), json!("about app"))));
    // The same names in realm 2 must survive.
    db.ok(&insert(arealm(2, 2, "app", "STOPPED")));
    db.ok(&insert(role(2, 2, "role")));
    db.ok(&insert(rcluster(2, 2, "cluster", "STOPPED")));
    db.ok(&insert(trace(2, "t1")));

    let out = db.ok(&delete(Kind::ManagementRealm, &m, true));
    assert_eq!(out["name"], "realm1");
    assert_eq!(out["unpaired"], json!([oid(NODE, 1), oid(NODE, 2)]));

    let r = db.read();
    assert!(r.get::<ManagementRealm>(&m).unwrap().is_none());
    assert!(
        r.lookup::<ManagementRealm>(Index::MrealmByName, "realm1")
            .unwrap()
            .is_none()
    );
    for n in [1, 2] {
        let found = r
            .get::<Node>(&oid(NODE, n).to_string())
            .unwrap()
            .expect("nodes stay");
        assert_eq!(found.mrealm_oid, None);
        assert_eq!(found.authid, None);
        assert_eq!(found.pubkey, format!("pk{n}"));
    }
    assert!(
        r.index_keys(Index::NodeByMrealm, &format!("{m}/"))
            .unwrap()
            .is_empty()
    );
    assert!(
        r.index_keys(Index::NodeByAuthid, &format!("{m}/"))
            .unwrap()
            .is_empty()
    );
    assert!(
        r.get::<Presence>(&oid(NODE, 1).to_string())
            .unwrap()
            .is_none()
    );

    for kind in [
        Kind::UserMrealmRole,
        Kind::ApplicationRealm,
        Kind::Role,
        Kind::Permission,
        Kind::Principal,
        Kind::Credential,
        Kind::ArealmRoleAssociation,
        Kind::RouterCluster,
        Kind::RouterClusterNodeMembership,
        Kind::RouterWorkerGroup,
        Kind::RouterWorkerGroupClusterPlacement,
        Kind::WebCluster,
        Kind::WebClusterNodeMembership,
        Kind::WebService,
        Kind::Trace,
        Kind::Docs,
    ] {
        assert!(
            r.list_json(kind, &format!("{m}/")).unwrap().is_empty(),
            "{kind} left behind"
        );
    }
    for index in [
        Index::ArealmByName,
        Index::RoleByName,
        Index::PermissionByUri,
        Index::PrincipalByAuthid,
        Index::CredentialByMethod,
        Index::RouterClusterByName,
        Index::WorkerGroupByName,
        Index::WebClusterByName,
        Index::WebServiceByPath,
    ] {
        assert!(
            r.index_keys(index, &format!("{m}/")).unwrap().is_empty(),
            "{index} left behind"
        );
    }
    assert!(
        r.lookup::<ApplicationRealm>(Index::ArealmByName, &format!("{m}/app"))
            .unwrap()
            .is_none()
    );
    assert!(
        r.lookup::<Role>(Index::RoleByName, &format!("{m}/role"))
            .unwrap()
            .is_none()
    );
    let cluster = r.lookup::<RouterCluster>(Index::RouterClusterByName, &format!("{m}/cluster"));
    assert!(cluster.unwrap().is_none());
    let roles_of_user2 = r.index_keys(Index::MrealmRoleByUser, &format!("{}/", oid(USER, 2)));
    assert_eq!(roles_of_user2.unwrap(), vec![umrole(2, 2, vec![]).key()]);

    // Realm 2 is untouched.
    let app = r
        .lookup::<ApplicationRealm>(Index::ArealmByName, &format!("{other}/app"))
        .unwrap();
    assert_eq!(app.unwrap().oid, oid(AREALM, 2));
    assert!(
        r.lookup::<Role>(Index::RoleByName, &format!("{other}/role"))
            .unwrap()
            .is_some()
    );
    let cluster =
        r.lookup::<RouterCluster>(Index::RouterClusterByName, &format!("{other}/cluster"));
    assert!(cluster.unwrap().is_some());
    assert_eq!(r.count(Kind::Trace).unwrap(), 1);
    let node3 = r.get::<Node>(&oid(NODE, 3).to_string()).unwrap().unwrap();
    assert_eq!(node3.mrealm_oid, Some(oid(MREALM, 2)));
    assert!(
        r.get::<Presence>(&oid(NODE, 3).to_string())
            .unwrap()
            .is_some()
    );
    assert_eq!(r.count(Kind::Node).unwrap(), 3);
    assert_eq!(r.count(Kind::User).unwrap(), 2);
    assert_eq!(r.count(Kind::ManagementRealm).unwrap(), 1);
}

#[test]
fn running_objects_cannot_be_deleted() {
    let db = realms();
    let key = arealm(1, 1, "", "").key();
    db.ok(&insert(arealm(1, 1, "app", "RUNNING")));
    for cascade in [false, true] {
        let e = db.refused(&delete(Kind::ApplicationRealm, &key, cascade));
        assert_eq!(
            e,
            ApplyError::NotStopped {
                kind: Kind::ApplicationRealm,
                key: key.clone(),
                status: "RUNNING".into(),
            }
        );
        assert_eq!(refusal_uri(&e), "crossbar.error.not_stopped");
    }
    db.ok(&modify(
        Kind::ApplicationRealm,
        &key,
        json!({"status": "STOPPED"}),
        None,
    ));
    db.ok(&delete(Kind::ApplicationRealm, &key, false));

    db.ok(&insert(rcluster(1, 1, "c", "STARTING")));
    let ckey = rcluster(1, 1, "", "").key();
    let e = db.refused(&delete(Kind::RouterCluster, &ckey, true));
    assert_eq!(
        e,
        ApplyError::NotStopped {
            kind: Kind::RouterCluster,
            key: ckey,
            status: "STARTING".into(),
        }
    );

    db.ok(&insert(wcluster(1, 1, "w", "RUNNING")));
    let e = db.refused(&delete(
        Kind::WebCluster,
        &wcluster(1, 1, "", "").key(),
        false,
    ));
    assert_eq!(refusal_uri(&e), "crossbar.error.not_stopped");
}

#[test]
fn trace_status_changes_are_compare_and_set() {
    let db = realms();
    let key = trace(1, "t1").key();
    db.ok(&insert(trace(1, "t1")));
    let to = |status: &str, rule: StatusRule| {
        modify(Kind::Trace, &key, json!({"status": status}), Some(rule))
    };
    let start = || to("starting", StatusRule::StartFrom(vec!["stopped".into()]));
    db.ok(&start());
    // A second start (from another replica) loses: the first one won at apply time.
    let e = db.refused(&start());
    assert_eq!(refusal_uri(&e), "crossbar.error.cannot_start");
    // Neither a starting nor a running trace can be deleted.
    for status in ["starting", "running", "stopping"] {
        db.ok(&modify(Kind::Trace, &key, json!({"status": status}), None));
        let e = db.refused(&delete(Kind::Trace, &key, false));
        assert_eq!(
            e,
            ApplyError::NotStopped {
                kind: Kind::Trace,
                key: key.clone(),
                status: status.into(),
            }
        );
    }
    let stop = || {
        to(
            "stopping",
            StatusRule::StopFrom(vec!["running".into(), "stopping_failed".into()]),
        )
    };
    let e = db.refused(&stop());
    assert_eq!(refusal_uri(&e), "crossbar.error.cannot_stop");
    db.ok(&modify(
        Kind::Trace,
        &key,
        json!({"status": "stopping_failed"}),
        None,
    ));
    db.ok(&stop());
    db.ok(&modify(
        Kind::Trace,
        &key,
        json!({"status": "stopped"}),
        None,
    ));
    db.ok(&delete(Kind::Trace, &key, false));
    let e = db.refused(&delete(Kind::Trace, &key, false));
    assert_eq!(refusal_uri(&e), "crossbar.error.no_such_object");
    // A failed stop may be deleted too.
    let mut failed = trace(1, "t2");
    failed.status = "stopping_failed".into();
    db.ok(&insert(failed.clone()));
    db.ok(&delete(Kind::Trace, &failed.key(), false));
    // Trace ids are unique within a realm.
    db.ok(&insert(trace(1, "t3")));
    assert_eq!(
        refusal_uri(&db.refused(&insert(trace(1, "t3")))),
        "crossbar.error.already_exists"
    );
}

#[test]
fn status_rules_decide_start_and_stop() {
    let db = realms();
    let key = arealm(1, 1, "", "").key();
    db.ok(&insert(arealm(1, 1, "app", "STOPPED")));
    let start = |to: &str| {
        modify(
            Kind::ApplicationRealm,
            &key,
            json!({"status": to}),
            Some(StatusRule::StartFrom(vec!["STOPPED".into()])),
        )
    };
    let stop = |to: &str| {
        modify(
            Kind::ApplicationRealm,
            &key,
            json!({"status": to}),
            Some(StatusRule::StopFrom(vec!["RUNNING".into()])),
        )
    };

    let e = db.refused(&stop("STOPPING"));
    assert_eq!(
        e,
        ApplyError::CannotStop {
            kind: Kind::ApplicationRealm,
            key: key.clone(),
            status: "STOPPED".into(),
        }
    );
    assert_eq!(refusal_uri(&e), "crossbar.error.cannot_stop");

    let out = db.ok(&start("RUNNING"));
    assert_eq!(out["status"], "RUNNING");
    let e = db.refused(&start("RUNNING"));
    assert_eq!(
        e,
        ApplyError::CannotStart {
            kind: Kind::ApplicationRealm,
            key: key.clone(),
            status: "RUNNING".into(),
        }
    );
    assert_eq!(refusal_uri(&e), "crossbar.error.cannot_start");

    db.ok(&stop("STOPPED"));
    let now = db.read().get::<ApplicationRealm>(&key).unwrap().unwrap();
    assert_eq!(now.status, "STOPPED");

    // An object without a status counts as NONE.
    db.ok(&insert(role(1, 1, "role")));
    let rkey = role(1, 1, "").key();
    let e = db.refused(&modify(
        Kind::Role,
        &rkey,
        json!({"label": "x"}),
        Some(StatusRule::StopFrom(vec!["RUNNING".into()])),
    ));
    assert_eq!(
        e,
        ApplyError::CannotStop {
            kind: Kind::Role,
            key: rkey,
            status: "NONE".into(),
        }
    );
}

#[test]
fn pairing_twice_and_unpairing_an_unpaired_node_are_refused() {
    let db = realms();
    db.ok(&pair(1, "pk1", 1, "edge1"));
    for (n, m) in [(2, 2), (1, 1)] {
        let e = db.refused(&pair(n, "pk1", m, "edge9"));
        assert_eq!(
            e,
            ApplyError::NodeAlreadyPaired {
                pubkey: "pk1".into(),
            }
        );
        assert_eq!(refusal_uri(&e), "fabric.node-already-paired");
    }

    db.ok(&insert(node(3, "pk3")));
    let e = db.refused(&Command::UnpairNode { oid: oid(NODE, 3) });
    assert_eq!(
        e,
        ApplyError::NodeNotPaired {
            key: oid(NODE, 3).to_string(),
        }
    );
    assert_eq!(refusal_uri(&e), "fabric.node-not-paired");

    let e = db.refused(&Command::UnpairNode { oid: oid(NODE, 9) });
    assert_eq!(
        e,
        ApplyError::NoSuchObject {
            kind: Kind::Node,
            key: oid(NODE, 9).to_string(),
        }
    );
    // Pairing to a realm that does not exist.
    let e = db.refused(&pair(4, "pk4", 7, "edge"));
    assert_eq!(refusal_uri(&e), "crossbar.error.no_such_object");
}

#[test]
fn invalid_arguments_are_refused() {
    let db = realms();
    db.ok(&insert(role(1, 1, "role")));
    let key = role(1, 1, "").key();
    let invalid = [
        // Key fields cannot change.
        modify(Kind::Role, &key, json!({"mrealm_oid": mkey(2)}), None),
        modify(Kind::Role, &key, json!({"oid": oid(ROLE, 2)}), None),
        // Wrong types.
        modify(Kind::Role, &key, json!({"name": 5}), None),
        modify(Kind::Role, &key, json!({"created": "yesterday"}), None),
        // Pairing needs a realm and an authid.
        Command::PairNode {
            node: node(1, "pk1"),
        },
        Command::PairNode {
            node: Node {
                authid: None,
                ..paired(1, "pk1", 1, "x")
            },
        },
    ];
    for cmd in &invalid {
        let e = db.refused(cmd);
        assert!(
            matches!(e, ApplyError::InvalidArgument(_)),
            "{cmd:?}: {e:?}"
        );
        assert_eq!(refusal_uri(&e), "wamp.error.invalid_argument");
    }

    // Placements of another worker group.
    db.ok(&insert(rcluster(1, 1, "c", "STOPPED")));
    db.ok(&insert(node(1, "pk1")));
    let e = db.refused(&add_group(
        wgroup(1, 1, 1, "wg"),
        vec![placement(1, 1, 2, 1, 1)],
    ));
    assert!(matches!(e, ApplyError::InvalidArgument(_)), "{e:?}");

    // A modify that keeps the key is applied and moves the name index.
    db.ok(&modify(Kind::Role, &key, json!({"name": "renamed"}), None));
    let r = db.read();
    assert!(
        r.lookup::<Role>(Index::RoleByName, &format!("{}/role", mkey(1)))
            .unwrap()
            .is_none()
    );
    let renamed = r
        .lookup::<Role>(Index::RoleByName, &format!("{}/renamed", mkey(1)))
        .unwrap();
    assert_eq!(renamed.unwrap().oid, oid(ROLE, 1));
}

// ---- pairing and presence -------------------------------------------------------------------

#[test]
fn pairing_keeps_known_nodes_and_unpairing_returns_the_paired_record() {
    let db = realms();
    db.ok(&insert(Node {
        label: Some("edge box".into()),
        ..node(1, "pk1")
    }));

    // A known unpaired node keeps its oid, whatever oid the request proposes.
    let out = db.ok(&pair(7, "pk1", 1, "edge1"));
    assert_eq!(out["oid"], json!(oid(NODE, 1)));
    assert_eq!(out["mrealm_oid"], json!(oid(MREALM, 1)));
    {
        let r = db.read();
        assert_eq!(r.count(Kind::Node).unwrap(), 1);
        assert!(r.get::<Node>(&oid(NODE, 7).to_string()).unwrap().is_none());
        let by_authid = format!("{}/edge1", mkey(1));
        let found = r
            .lookup::<Node>(Index::NodeByAuthid, &by_authid)
            .unwrap()
            .unwrap();
        assert_eq!(found.oid, oid(NODE, 1));
        assert_eq!(found.label.as_deref(), Some("edge box"));
        let in_realm = r
            .index_keys(Index::NodeByMrealm, &format!("{}/", mkey(1)))
            .unwrap();
        assert_eq!(in_realm, vec![oid(NODE, 1).to_string()]);
    }

    // Unpairing answers with the paired record.
    let out = db.ok(&Command::UnpairNode { oid: oid(NODE, 1) });
    assert_eq!(out["mrealm_oid"], json!(oid(MREALM, 1)));
    assert_eq!(out["authid"], "edge1");
    {
        let r = db.read();
        let found = r.get::<Node>(&oid(NODE, 1).to_string()).unwrap().unwrap();
        assert_eq!(found.mrealm_oid, None);
        assert_eq!(found.authid, None);
        let by_pubkey = r
            .lookup::<Node>(Index::NodeByPubkey, "pk1")
            .unwrap()
            .unwrap();
        assert_eq!(by_pubkey.oid, oid(NODE, 1));
        let by_authid = format!("{}/edge1", mkey(1));
        assert!(
            r.lookup::<Node>(Index::NodeByAuthid, &by_authid)
                .unwrap()
                .is_none()
        );
        assert!(
            r.index_keys(Index::NodeByMrealm, &format!("{}/", mkey(1)))
                .unwrap()
                .is_empty()
        );
    }

    // It can pair again, with another realm.
    let out = db.ok(&pair(8, "pk1", 2, "edge1"));
    assert_eq!(out["oid"], json!(oid(NODE, 1)));
    let in_realm = db
        .read()
        .index_keys(Index::NodeByMrealm, &format!("{}/", mkey(2)))
        .unwrap();
    assert_eq!(in_realm, vec![oid(NODE, 1).to_string()]);

    // An unknown pubkey creates a node with the proposed oid.
    let out = db.ok(&pair(9, "pk9", 1, "edge1"));
    assert_eq!(out["oid"], json!(oid(NODE, 9)));
    assert_eq!(db.read().count(Kind::Node).unwrap(), 2);
}

#[test]
fn a_restarted_replica_drops_the_presence_of_its_earlier_runs_whatever_the_clocks() {
    let db = realms();
    db.ok(&pair(1, "pk1", 1, "e1"));
    db.ok(&pair(2, "pk2", 1, "e2"));
    db.ok(&pair(3, "pk3", 1, "e3"));
    // Replica 1's earlier run wrote node 1's presence with its clock an hour ahead; its
    // current run (run 8) holds node 2; replica 2 holds node 3.
    let with = |n: u128, replica: u64, run: u64, since: i64| Command::PresenceJoin {
        presence: Presence {
            run,
            since,
            ..presence(n, 1, replica, n as u64)
        },
    };
    let now = 1_800_000_000_000_000_000;
    let hour = 3_600_000_000_000;
    db.ok(&with(1, 1, 7, now + hour));
    db.ok(&with(2, 1, 8, now + 1));
    db.ok(&with(3, 2, 5, now - hour));
    let forget = Command::PresenceDropStale {
        replica_id: 1,
        joined_before: now,
        current_run: Some(8),
    };
    assert_eq!(db.ok(&forget), json!(1));
    let r = db.read();
    let held = |n: u128| r.get::<Presence>(&oid(NODE, n).to_string()).unwrap();
    assert!(
        held(1).is_none(),
        "the earlier run's node, its clock ahead, is dropped"
    );
    assert!(held(2).is_some(), "the current run's node stays");
    assert!(held(3).is_some(), "another replica's node stays");
    drop(r);
    // An entry written before runs were recorded goes by the clock, as it did.
    db.ok(&with(1, 1, 0, now - 1));
    let old = Command::PresenceDropStale {
        replica_id: 1,
        joined_before: now,
        current_run: None,
    };
    assert_eq!(db.ok(&old), json!(1));
}

#[test]
fn presence_follows_the_latest_session() {
    let db = realms();
    db.ok(&pair(1, "pk1", 1, "e1"));
    db.ok(&pair(2, "pk2", 1, "e2"));
    db.ok(&pair(3, "pk3", 2, "e3"));
    let n1 = oid(NODE, 1).to_string();

    db.ok(&join(1, 1, 1, 10));
    db.ok(&join(1, 1, 2, 11));
    {
        let r = db.read();
        let p = r.get::<Presence>(&n1).unwrap().unwrap();
        assert_eq!((p.replica_id, p.session_id), (2, 11));
        assert_eq!(r.count(Kind::Presence).unwrap(), 1);
        assert!(
            r.index_keys(Index::PresenceByReplica, &replica_prefix(1))
                .unwrap()
                .is_empty()
        );
        let on_2 = r
            .index_keys(Index::PresenceByReplica, &replica_prefix(2))
            .unwrap();
        assert_eq!(on_2, vec![n1.clone()]);
    }

    // A stale session's leave does nothing; the current one's removes the record.
    assert_eq!(db.ok(&leave(1, 10)), json!(false));
    assert!(db.read().get::<Presence>(&n1).unwrap().is_some());
    assert_eq!(db.ok(&leave(1, 11)), json!(true));
    assert!(db.read().get::<Presence>(&n1).unwrap().is_none());
    assert_eq!(db.ok(&leave(1, 11)), json!(false));

    // Dropping a replica forgets exactly its nodes.
    db.ok(&join(1, 1, 1, 20));
    db.ok(&join(2, 1, 1, 21));
    db.ok(&join(3, 2, 2, 22));
    assert_eq!(
        db.ok(&Command::PresenceDropReplica { replica_id: 1 }),
        json!(2)
    );
    {
        let r = db.read();
        assert_eq!(r.count(Kind::Presence).unwrap(), 1);
        assert!(
            r.get::<Presence>(&oid(NODE, 3).to_string())
                .unwrap()
                .is_some()
        );
        assert!(
            r.index_keys(Index::PresenceByReplica, &replica_prefix(1))
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        db.ok(&Command::PresenceDropReplica { replica_id: 7 }),
        json!(0)
    );

    let e = db.refused(&join(9, 1, 1, 1));
    assert_eq!(
        e,
        ApplyError::NoSuchObject {
            kind: Kind::Node,
            key: oid(NODE, 9).to_string(),
        }
    );

    // Unpairing clears the node's presence.
    db.ok(&Command::UnpairNode { oid: oid(NODE, 3) });
    let r = db.read();
    assert_eq!(r.count(Kind::Presence).unwrap(), 0);
    assert!(
        r.index_keys(Index::PresenceByReplica, &replica_prefix(2))
            .unwrap()
            .is_empty()
    );
}

// ---- activation tokens ----------------------------------------------------------------------

#[test]
fn activation_tokens_replace_and_activate_once() {
    let db = Db::new();
    db.ok(&issue(token(1, "a@x", "pk1")));
    db.ok(&issue(token(2, "a@x", "pk1")));
    db.ok(&issue(token(3, "a@x", "pk2")));
    {
        let r = db.read();
        let lookup = ActivationToken::lookup_key("a@x", "pk1");
        let t = r
            .lookup::<ActivationToken>(Index::TokenByEmailPubkey, &lookup)
            .unwrap();
        assert_eq!(t.unwrap().oid, oid(TOKEN, 2));
        assert!(
            r.get::<ActivationToken>(&oid(TOKEN, 1).to_string())
                .unwrap()
                .is_none()
        );
        assert_eq!(r.count(Kind::ActivationToken).unwrap(), 2);
    }

    let new_user = User {
        pubkey: Some("pk1".into()),
        ..user_with(1, "a@x")
    };
    let out = db.ok(&activate(2, 50, Some(new_user.clone())));
    assert_eq!(out["status"], json!(TOKEN_ACTIVE));
    assert_eq!(out["completed"], json!(50));
    {
        let r = db.read();
        assert_eq!(
            r.lookup::<User>(Index::UserByEmail, "a@x").unwrap(),
            Some(new_user)
        );
        let by_key = r
            .lookup::<User>(Index::UserByPubkey, "pk1")
            .unwrap()
            .unwrap();
        assert_eq!(by_key.oid, oid(USER, 1));
    }

    // A second registration for the same e-mail activates its token but adds no user.
    let out = db.ok(&activate(3, 60, Some(user_with(2, "a@x"))));
    assert_eq!(out["status"], json!(TOKEN_ACTIVE));
    {
        let r = db.read();
        assert_eq!(r.count(Kind::User).unwrap(), 1);
        assert!(r.get::<User>(&oid(USER, 2).to_string()).unwrap().is_none());
    }

    // A token activates once.
    let e = db.refused(&activate(2, 70, Some(user_with(3, "b@x"))));
    assert!(matches!(e, ApplyError::InvalidArgument(_)), "{e:?}");
    let stored = db
        .read()
        .get::<ActivationToken>(&oid(TOKEN, 2).to_string())
        .unwrap()
        .unwrap();
    assert_eq!((stored.status, stored.completed), (TOKEN_ACTIVE, Some(50)));

    let e = db.refused(&activate(9, 1, None));
    assert_eq!(
        e,
        ApplyError::NoSuchObject {
            kind: Kind::ActivationToken,
            key: oid(TOKEN, 9).to_string(),
        }
    );
}

// ---- known gaps in apply.rs: these fail until the store is fixed ----------------------------

/// `IssueActivationToken` erases the earlier token for the e-mail and key before validating the
/// new one: when the new token's oid is taken, the command is refused but the old token is gone.
#[test]
fn a_refused_token_issue_keeps_the_earlier_token() {
    let db = Db::new();
    db.ok(&issue(token(1, "a@x", "pk1")));
    db.ok(&issue(token(2, "b@x", "pk2")));
    // Token 2's oid with token 1's e-mail and key.
    let e = db.refused(&issue(token(2, "a@x", "pk1")));
    assert_eq!(
        e,
        ApplyError::Duplicate {
            kind: Kind::ActivationToken,
            key: oid(TOKEN, 2).to_string(),
        }
    );
}

/// Deleting a user with cascade deletes the realms it owns, but only a top-level realm delete
/// unpairs the realm's nodes: they stay paired (with index entries) to a realm that is gone.
#[test]
fn no_node_stays_paired_to_a_realm_deleted_with_its_owner() {
    let db = realms();
    db.ok(&pair(1, "pk1", 1, "edge1"));
    let out = db.run(&delete(Kind::User, &oid(USER, 1).to_string(), true));
    let r = db.read();
    if out.is_ok() {
        assert_eq!(r.count(Kind::ManagementRealm).unwrap(), 0);
    }
    for found in r.list::<Node>("").unwrap() {
        if let Some(m) = found.mrealm_oid {
            let realm = r.get::<ManagementRealm>(&m.to_string()).unwrap();
            assert!(
                realm.is_some(),
                "node {} is paired to deleted realm {m}",
                found.oid
            );
        }
    }
}

/// `AddWorkerGroup` checks a placement's group and cluster but not its realm: a placement with
/// another `mrealm_oid` is stored under that realm's keys, where no cascade of the group finds it.
#[test]
fn placements_must_live_in_the_worker_groups_realm() {
    let db = realms();
    db.ok(&insert(rcluster(1, 1, "c", "STOPPED")));
    db.ok(&insert(node(1, "pk1")));
    let stray = RouterWorkerGroupClusterPlacement {
        mrealm_oid: oid(MREALM, 2),
        ..placement(1, 1, 1, 1, 1)
    };
    let e = db.refused(&add_group(wgroup(1, 1, 1, "wg"), vec![stray]));
    assert!(matches!(e, ApplyError::InvalidArgument(_)), "{e:?}");
}

// ---- snapshots ------------------------------------------------------------------------------

/// 288 objects of every kind across four realms.
fn populate(db: &Db) {
    for u in 0..10 {
        db.ok(&insert(User {
            pubkey: Some(format!("upk{u}")),
            ..user(u)
        }));
    }
    for o in 0..3 {
        db.ok(&insert(org(o, &format!("org{o}"))));
    }
    for u in 0..10 {
        db.ok(&upsert(uorole(u, u % 3, vec![ROLE_USER])));
    }
    for t in 0..5 {
        db.ok(&issue(token(t, &format!("t{t}@x"), &format!("tpk{t}"))));
    }
    for m in 0..4u128 {
        db.ok(&insert(mrealm(m, m)));
        for u in 4..7 {
            db.ok(&upsert(umrole(u, m, vec![ROLE_ADMIN, ROLE_USER])));
        }
        for i in 0..5u128 {
            let k = m * 10 + i;
            db.ok(&pair(k, &format!("pk{k}"), m, &format!("edge{i}")));
            if i < 3 {
                db.ok(&join(k, m, (m % 2) as u64, k as u64));
            }
            let status = if i % 2 == 0 { "STOPPED" } else { "RUNNING" };
            db.ok(&insert(arealm(m, k, &format!("app{i}"), status)));
            db.ok(&insert(role(m, k, &format!("role{i}"))));
            for j in 0..2 {
                db.ok(&insert(permission(
                    m,
                    k,
                    k * 2 + j,
                    &format!("com.example.p{j}"),
                )));
            }
            db.ok(&insert(principal(m, k, k, k, &format!("principal{i}"))));
            db.ok(&insert(credential(m, k, k, k, "ticket")));
            db.ok(&insert(association(m, k, k)));
        }
        for j in 0..2u128 {
            let c = m * 10 + j;
            db.ok(&insert(rcluster(m, c, &format!("cluster{j}"), "STOPPED")));
            db.ok(&insert(rmember(m, c, m * 10 + j)));
            let placements = (0..2)
                .map(|x| placement(m, c, c, c * 2 + x, m * 10 + x))
                .collect();
            db.ok(&add_group(wgroup(m, c, c, "wg"), placements));
            db.ok(&insert(trace(m, &format!("trace{j}"))));
        }
        db.ok(&insert(wcluster(m, m, "web", "STOPPED")));
        db.ok(&insert(wmember(m, m, m * 10 + 3)));
        db.ok(&insert(wmember(m, m, m * 10 + 4)));
        for x in 0..3 {
            db.ok(&insert(webservice(m, m, m * 10 + x, &format!("path{x}"))));
        }
    }
}

#[test]
fn snapshots_round_trip_byte_for_byte() {
    let a = Db::new();
    populate(&a);
    let bytes = a.dump();
    let objects: u64 = {
        let r = a.read();
        Kind::ALL.iter().map(|k| r.count(*k).unwrap()).sum()
    };
    assert_eq!(objects, 288);
    assert_eq!(snapshot::object_count(&bytes).unwrap(), objects);

    // Loading replaces whatever the target held.
    let b = Db::new();
    b.ok(&insert(user(99)));
    let txn = b.begin();
    snapshot::load(&txn, &bytes).unwrap();
    txn.commit().unwrap();
    assert!(b.dump() == bytes, "a loaded snapshot dumps differently");

    {
        let r = b.read();
        assert!(r.get::<User>(&oid(USER, 99).to_string()).unwrap().is_none());
        let u = r
            .lookup::<User>(Index::UserByEmail, "user3@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(u.oid, oid(USER, 3));
        let app = format!("{}/app2", mkey(1));
        let found = r
            .lookup::<ApplicationRealm>(Index::ArealmByName, &app)
            .unwrap()
            .unwrap();
        assert_eq!(found.oid, oid(AREALM, 12));
        let edge = format!("{}/edge4", mkey(3));
        let found = r
            .lookup::<Node>(Index::NodeByAuthid, &edge)
            .unwrap()
            .unwrap();
        assert_eq!(found.oid, oid(NODE, 34));
        let in_realm = r
            .index_keys(Index::NodeByMrealm, &format!("{}/", mkey(2)))
            .unwrap();
        assert_eq!(in_realm.len(), 5);
        let on_replica = r
            .index_keys(Index::PresenceByReplica, &replica_prefix(1))
            .unwrap();
        assert_eq!(on_replica.len(), 6);
        let lookup = ActivationToken::lookup_key("t4@x", "tpk4");
        let t = r
            .lookup::<ActivationToken>(Index::TokenByEmailPubkey, &lookup)
            .unwrap();
        assert_eq!(t.unwrap().oid, oid(TOKEN, 4));
    }

    // The loaded state keeps working: its indexes refuse and its cascades find everything.
    let e = b.refused(&insert(arealm(1, 99, "app2", "STOPPED")));
    assert_taken(
        &e,
        Kind::ApplicationRealm,
        Index::ArealmByName,
        &format!("{}/app2", mkey(1)),
    );
    let out = b.ok(&delete(Kind::ManagementRealm, &mkey(1), true));
    assert_eq!(out["unpaired"].as_array().unwrap().len(), 5);
    assert_eq!(b.read().count(Kind::ApplicationRealm).unwrap(), 15);
}

#[test]
fn truncated_or_padded_snapshots_are_errors() {
    let a = Db::new();
    populate(&a);
    let bytes = a.dump();
    let len = bytes.len();

    let b = Db::new();
    b.ok(&insert(user(99)));
    let before = b.dump();
    for cut in [0, 1, 3, 4, 5, 12, len / 3, len / 2, len - 9, len - 1] {
        let txn = b.begin();
        let loaded = snapshot::load(&txn, &bytes[..cut]);
        assert!(loaded.is_err(), "a dump cut at {cut} of {len} bytes loaded");
        drop(txn);
        assert!(snapshot::object_count(&bytes[..cut]).is_err());
    }
    let mut padded = bytes.clone();
    padded.push(0);
    let txn = b.begin();
    assert!(
        snapshot::load(&txn, &padded).is_err(),
        "trailing bytes were accepted"
    );
    drop(txn);
    // Aborted loads leave the state as it was.
    assert!(b.dump() == before);
}

// ---- wire shapes ----------------------------------------------------------------------------

#[test]
fn wire_names_follow_the_reference() {
    let p = Permission {
        match_: Some("prefix".into()),
        ..permission(1, 1, 1, "com.example")
    };
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["match"], "prefix");
    assert!(v.get("match_").is_none());
    assert_eq!(serde_json::from_value::<Permission>(v).unwrap(), p);

    let mut extra = Extra::new();
    extra.insert("directory".into(), json!("/srv/www"));
    let s = WebService {
        extra,
        ..webservice(1, 1, 1, "static")
    };
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["type"], "static");
    assert!(v.get("service_type").is_none());
    assert_eq!(v["directory"], "/srv/www");
    assert!(v.get("extra").is_none());
    assert_eq!(serde_json::from_value::<WebService>(v).unwrap(), s);

    let input = json!({
        "oid": oid(AREALM, 1),
        "mrealm_oid": oid(MREALM, 1),
        "name": "app",
        "status": "STOPPED",
        "changed": 5,
        "enable_meta_api": true,
        "bridge_meta_api": false,
    });
    let app: ApplicationRealm = serde_json::from_value(input).unwrap();
    assert_eq!(app.extra.get("enable_meta_api"), Some(&json!(true)));
    let v = serde_json::to_value(&app).unwrap();
    assert_eq!(v["enable_meta_api"], true);
    assert_eq!(v["bridge_meta_api"], false);
    assert!(v.get("extra").is_none());

    // Unknown keys survive the store, and a modify can change them.
    let db = realms();
    db.ok(&insert(app.clone()));
    let stored = db
        .read()
        .get::<ApplicationRealm>(&app.key())
        .unwrap()
        .unwrap();
    assert_eq!(stored, app);
    db.ok(&modify(
        Kind::ApplicationRealm,
        &app.key(),
        json!({"enable_meta_api": false}),
        None,
    ));
    let stored = db
        .read()
        .get::<ApplicationRealm>(&app.key())
        .unwrap()
        .unwrap();
    assert_eq!(stored.extra.get("enable_meta_api"), Some(&json!(false)));
    assert_eq!(stored.extra.get("bridge_meta_api"), Some(&json!(false)));

    // Oids are lowercase hyphenated strings.
    let id = Uuid::from_u128(0xABCDEF01_2345_6789_ABCD_EF0123456789);
    let v = serde_json::to_value(User { oid: id, ..user(1) }).unwrap();
    assert_eq!(v["oid"], "abcdef01-2345-6789-abcd-ef0123456789");
    assert_eq!(serde_json::from_value::<User>(v).unwrap().oid, id);

    // Commands are tagged by op, records by kind.
    let v = serde_json::to_value(insert(user(1))).unwrap();
    assert_eq!(v["op"], "insert");
    assert_eq!(v["record"]["kind"], "user");
    assert_eq!(v["record"]["record"]["email"], "user1@example.com");
    let v = serde_json::to_value(delete(Kind::ManagementRealm, "x", true)).unwrap();
    assert_eq!(v["op"], "delete");
    assert_eq!(v["kind"], "management_realm");
    assert_eq!(v["cascade"], true);
}

#[test]
fn docs_are_kept_per_object_and_replaced() {
    let db = realms();
    let object = oid(AREALM, 1);
    db.ok(&upsert(docs(1, object, json!({"text": "v1"}))));
    db.ok(&upsert(docs(1, object, json!({"text": "v2"}))));
    db.ok(&upsert(docs(2, object, json!("other realm"))));
    let key = format!("{}/{object}", mkey(1));
    let r = db.read();
    let stored: Docs = r.get(&key).unwrap().expect("stored");
    assert_eq!(stored.docs, json!({"text": "v2"}));
    assert_eq!(r.list::<Docs>(&format!("{}/", mkey(1))).unwrap().len(), 1);
    drop(r);
    let e = db.refused(&upsert(docs(9, object, json!("x"))));
    assert_eq!(refusal_uri(&e), "crossbar.error.no_such_object");
    db.ok(&delete(Kind::Docs, &key, false));
    let e = db.refused(&delete(Kind::Docs, &key, false));
    assert_eq!(refusal_uri(&e), "crossbar.error.no_such_object");
    assert!(
        db.read()
            .get::<Docs>(&format!("{}/{object}", mkey(2)))
            .unwrap()
            .is_some()
    );
}

#[test]
fn cluster_node_with_placements_is_not_removed_without_cascade() {
    let db = realms();
    db.ok(&pair(1, "pk1", 1, "edge1"));
    db.ok(&pair(2, "pk2", 1, "edge2"));
    db.ok(&insert(rcluster(1, 1, "cluster", "STOPPED")));
    db.ok(&insert(rmember(1, 1, 1)));
    db.ok(&insert(rmember(1, 1, 2)));
    db.ok(&add_group(
        wgroup(1, 1, 1, "wg"),
        vec![placement(1, 1, 1, 1, 1)],
    ));
    let member1 = rmember(1, 1, 1).key();
    let e = db.refused(&delete(Kind::RouterClusterNodeMembership, &member1, false));
    assert_eq!(refusal_uri(&e), "crossbar.error.dependent_objects");
    // A node without placements leaves freely.
    db.ok(&delete(
        Kind::RouterClusterNodeMembership,
        &rmember(1, 1, 2).key(),
        false,
    ));
    db.ok(&delete(Kind::RouterClusterNodeMembership, &member1, true));
    let r = db.read();
    assert!(
        r.get::<RouterWorkerGroupClusterPlacement>(&placement(1, 1, 1, 1, 1).key())
            .unwrap()
            .is_none()
    );
    assert!(
        r.get::<RouterWorkerGroup>(&wgroup(1, 1, 1, "wg").key())
            .unwrap()
            .is_some()
    );
}

// ---- purge ------------------------------------------------------------------------------------

/// A record that cannot be read back (written by an older version, or damaged) is skipped by
/// listings and cannot be deleted the normal way, which reads it first; `Purge` removes its
/// bytes and every index entry pointing at it without reading it.
#[test]
fn purge_removes_an_unreadable_record_and_its_index_entries() {
    let db = Db::new();
    db.ok(&Command::Insert {
        record: AnyRecord::Organization(org(1, "good")),
    });
    let bad_key = oid(2, 99).to_string();
    {
        let txn = db.begin();
        let records = redb::TableDefinition::<&str, &[u8]>::new(Kind::Organization.name());
        let by_name = redb::TableDefinition::<&str, &str>::new(Index::OrganizationByName.name());
        txn.open_table(records)
            .unwrap()
            .insert(bad_key.as_str(), b"{\"not\": [[[an organization".as_slice())
            .unwrap();
        txn.open_table(by_name)
            .unwrap()
            .insert("bad", bad_key.as_str())
            .unwrap();
        txn.commit().unwrap();
    }
    // The normal delete cannot read it.
    assert!(
        apply(
            &db.begin(),
            &Command::Delete {
                kind: Kind::Organization,
                key: bad_key.clone(),
                cascade: false,
            }
        )
        .is_err()
    );
    let purged = db.ok(&Command::Purge {
        kind: Kind::Organization,
        key: bad_key.clone(),
    });
    assert_eq!(purged["index_entries"], 1, "{purged}");
    let r = db.read();
    let names: Vec<_> = r
        .list_json(Kind::Organization, "")
        .unwrap()
        .into_iter()
        .map(|(_, v)| v["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("good")]);
    assert!(
        r.index_keys(Index::OrganizationByName, "bad")
            .unwrap()
            .is_empty()
    );
    // The name is free again, and purging twice is a clear refusal.
    db.ok(&Command::Insert {
        record: AnyRecord::Organization(org(3, "bad")),
    });
    assert!(matches!(
        db.refused(&Command::Purge {
            kind: Kind::Organization,
            key: bad_key,
        }),
        ApplyError::NoSuchObject { .. }
    ));
}

/// `Command::Once`: a proposal applied again under the same id (a retry after the leader
/// died before answering) gets the first answer and changes nothing, refusals included; the
/// memory travels with snapshots; a dump without it (older) loads with an empty memory.
#[test]
fn a_proposal_is_applied_at_most_once() {
    let a = Db::new();
    let once = |id: &str, cmd: Command| Command::Once {
        id: id.into(),
        at_ms: None,
        command: Box::new(cmd),
    };
    let first = a.ok(&once("p1", insert(user(1))));
    let after_first = a.dump();
    assert_eq!(a.ok(&once("p1", insert(user(1)))), first);
    assert!(
        a.dump() == after_first,
        "the repeated proposal changed the state"
    );
    // The same command under another id is a new write: refused as a duplicate.
    assert!(matches!(
        a.run(&once("p2", insert(user(1)))),
        Err(ApplyError::Duplicate { .. })
    ));
    // A refusal is remembered too: the repeat answers the same refusal.
    let refused = a.run(&once("p3", insert(user(1)))).unwrap_err();
    assert_eq!(a.run(&once("p3", insert(user(2)))).unwrap_err(), refused);
    assert_eq!(a.read().count(Kind::User).unwrap(), 1);
    // Malformed: nested, empty or reserved ids.
    for bad in [
        once("p4", once("p5", insert(user(3)))),
        once("", insert(user(3))),
        once("#seq", insert(user(3))),
    ] {
        assert!(
            matches!(a.run(&bad), Err(ApplyError::InvalidArgument(_))),
            "{bad:?}"
        );
    }

    // A replica that installs the snapshot remembers p1.
    let b = Db::new();
    let txn = b.begin();
    snapshot::load(&txn, &a.dump()).unwrap();
    txn.commit().unwrap();
    assert_eq!(b.ok(&once("p1", insert(user(1)))), first);
    assert!(b.dump() == a.dump());

    // A dump made before the memory existed (state and index tables only) loads too.
    let c = Db::new();
    c.ok(&insert(user(7)));
    let full = c.dump();
    let memory_len = 2 * (4 + 8) + "applied_proposals".len() + "applied_by_seq".len();
    let old_format = &full[..full.len() - memory_len];
    let d = Db::new();
    let txn = d.begin();
    snapshot::load(&txn, old_format).unwrap();
    txn.commit().unwrap();
    assert_eq!(d.read().count(Kind::User).unwrap(), 1);
    assert_eq!(snapshot::object_count(old_format).unwrap(), 1);
}

/// The memory of `Command::Once` is bounded by time as the log carries it: an answer
/// proposed more than `RETAIN_MS` before the proposal being applied is forgotten (the same on
/// every replica, whatever its own clock), one within it is kept; entries without a time
/// (written before it existed) are only bounded by count.
#[test]
fn the_exactly_once_memory_forgets_by_the_proposers_clock() {
    use fabric_master::store::once::RETAIN_MS;
    let a = Db::new();
    let at = |id: &str, ms: Option<u64>, cmd: Command| Command::Once {
        id: id.into(),
        at_ms: ms,
        command: Box::new(cmd),
    };
    let t0 = 1_800_000_000_000u64;
    a.ok(&at("old", Some(t0), insert(user(1))));
    a.ok(&at("untimed", None, insert(user(2))));
    a.ok(&at("recent", Some(t0 + RETAIN_MS), insert(user(3))));
    // Within the window of "recent": "old" (exactly RETAIN_MS before) is still remembered.
    assert!(a.run(&at("old", Some(t0), insert(user(1)))).is_ok());
    // A proposal one millisecond later pushes "old" out, and the untimed one after it
    // (pruning goes oldest first and stops at the first answer it keeps).
    a.ok(&at("later", Some(t0 + RETAIN_MS + 1), insert(user(4))));
    let dump = a.dump();
    // "old" is forgotten: proposing it again is a new write, refused as a duplicate.
    assert!(matches!(
        a.run(&at("old", Some(t0 + RETAIN_MS + 2), insert(user(1)))),
        Err(ApplyError::Duplicate { .. })
    ));
    // "recent" is still remembered: its repeat answers as before and changes nothing
    // (the refused "old" above was remembered as a refusal, a new entry).
    let before = a.dump();
    a.ok(&at("recent", Some(t0 + RETAIN_MS), insert(user(3))));
    assert!(a.dump() == before);
    assert!(dump != before);
    // The untimed answer is kept: nothing later carries a time able to expire it first.
    assert!(a.run(&at("untimed", None, insert(user(2)))).is_ok());
}
