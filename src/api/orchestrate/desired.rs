//! The desired state of one started object, read from the replicated store in one read
//! transaction: the object, the nodes it spans (with whether each is online), and what it
//! runs there. A reconciler pass works from one such snapshot.

use uuid::Uuid;

use crate::router::internal::CallError;
use crate::store::model::{
    ApplicationRealm, ArealmRoleAssociation, Credential, Json, Node, Permission, Presence,
    Principal, Role, RouterClusterNodeMembership, RouterWorkerGroup,
    RouterWorkerGroupClusterPlacement, WebCluster, WebClusterNodeMembership, WebService,
};
use crate::store::{Kind, Reader};

/// A node an object spans, as paired to this management realm.
#[derive(Clone, Debug)]
pub struct Member {
    pub node: Node,
    pub online: bool,
}

impl Member {
    pub fn authid(&self) -> &str {
        self.node.authid.as_deref().unwrap_or_default()
    }
}

fn member(r: &Reader, mrealm: &Uuid, node_oid: &Uuid) -> Result<Option<Member>, CallError> {
    let Some(node) = r.get::<Node>(&node_oid.to_string())? else {
        return Ok(None);
    };
    if node.mrealm_oid != Some(*mrealm) || node.authid.is_none() {
        return Ok(None);
    }
    let online = r
        .get::<Presence>(&node_oid.to_string())?
        .is_some_and(|p| p.mrealm_oid == *mrealm);
    Ok(Some(Member { node, online }))
}

/// A web cluster and the proxy workers it runs on each non-standby member node.
#[derive(Clone, Debug)]
pub struct WebClusterPlan {
    pub cluster: WebCluster,
    /// (member, proxy worker ids on it).
    pub proxies: Vec<(Member, Vec<String>)>,
    pub services: Vec<WebService>,
    /// The application realms started on this web cluster (not STOPPED), whose principals
    /// its WebSocket services admit.
    pub arealms: Vec<ArealmAccess>,
}

/// Who may join an application realm through a web cluster's proxies.
#[derive(Clone, Debug)]
pub struct ArealmAccess {
    pub name: String,
    /// (principal, its role's name, its credentials).
    pub principals: Vec<(Principal, String, Vec<Credential>)>,
}

pub fn webcluster(
    r: &Reader,
    mrealm: &Uuid,
    oid: &Uuid,
) -> Result<Option<WebClusterPlan>, CallError> {
    let Some(cluster) = r.get::<WebCluster>(&format!("{mrealm}/{oid}"))? else {
        return Ok(None);
    };
    let inside = format!("{mrealm}/{oid}/");
    let mut proxies = Vec::new();
    for m in r.list::<WebClusterNodeMembership>(&inside)? {
        if m.standby == Some(true) {
            continue;
        }
        if let Some(member) = member(r, mrealm, &m.node_oid)? {
            let ids = super::plan::proxy_worker_ids(oid, m.parallel.unwrap_or(1));
            proxies.push((member, ids));
        }
    }
    proxies.sort_by(|a, b| a.0.authid().cmp(b.0.authid()));
    let services = r.list::<WebService>(&inside)?;
    let mut arealms = Vec::new();
    for a in r.list::<ApplicationRealm>(&format!("{mrealm}/"))? {
        if a.webcluster_oid == Some(*oid) && a.status != "STOPPED" {
            arealms.push(access(r, mrealm, &a)?);
        }
    }
    arealms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(WebClusterPlan {
        cluster,
        proxies,
        services,
        arealms,
    }))
}

fn access(r: &Reader, mrealm: &Uuid, a: &ApplicationRealm) -> Result<ArealmAccess, CallError> {
    let mut principals = Vec::new();
    for p in r.list::<Principal>(&format!("{mrealm}/{}/", a.oid))? {
        let role = r
            .get::<Role>(&format!("{mrealm}/{}", p.role_oid))?
            .map(|r| r.name)
            .unwrap_or_default();
        let creds = r.list::<Credential>(&format!("{mrealm}/{}/", p.oid))?;
        principals.push((p, role, creds));
    }
    Ok(ArealmAccess {
        name: a.name.clone(),
        principals,
    })
}

/// One router worker of an application realm: a placement of its worker group.
#[derive(Clone, Debug)]
pub struct Placement {
    pub placement: RouterWorkerGroupClusterPlacement,
    pub member: Member,
}

impl Placement {
    pub fn worker(&self) -> &str {
        &self.placement.worker_name
    }
}

/// An application realm, the router workers it runs on, the roles it has, the member nodes
/// of its router cluster (the only ones its transports admit), and its web cluster.
#[derive(Clone, Debug)]
pub struct ArealmPlan {
    pub arealm: ApplicationRealm,
    pub group: Option<RouterWorkerGroup>,
    pub placements: Vec<Placement>,
    pub cluster_members: Vec<Member>,
    /// (role, its permissions).
    pub roles: Vec<(Role, Vec<Permission>)>,
    pub webcluster: Option<WebClusterPlan>,
}

pub fn arealm(r: &Reader, mrealm: &Uuid, oid: &Uuid) -> Result<Option<ArealmPlan>, CallError> {
    let Some(arealm) = r.get::<ApplicationRealm>(&format!("{mrealm}/{oid}"))? else {
        return Ok(None);
    };
    let mut group = None;
    let mut placements = Vec::new();
    let mut cluster_members = Vec::new();
    if let Some(wg) = arealm.workergroup_oid {
        group = r
            .list::<RouterWorkerGroup>(&format!("{mrealm}/"))?
            .into_iter()
            .find(|g| g.oid == wg);
        if let Some(g) = &group {
            for p in r.list::<RouterWorkerGroupClusterPlacement>(&format!("{mrealm}/{wg}/"))? {
                if let Some(member) = member(r, mrealm, &p.node_oid)? {
                    placements.push(Placement {
                        placement: p,
                        member,
                    });
                }
            }
            placements.sort_by(|a, b| a.worker().cmp(b.worker()));
            for m in
                r.list::<RouterClusterNodeMembership>(&format!("{mrealm}/{}/", g.cluster_oid))?
            {
                if let Some(member) = member(r, mrealm, &m.node_oid)? {
                    cluster_members.push(member);
                }
            }
        }
    }
    let mut roles = Vec::new();
    for assoc in r.list::<ArealmRoleAssociation>(&format!("{mrealm}/{oid}/"))? {
        if let Some(role) = r.get::<Role>(&format!("{mrealm}/{}", assoc.role_oid))? {
            let perms = r.list::<Permission>(&format!("{mrealm}/{}/", role.oid))?;
            roles.push((role, perms));
        }
    }
    roles.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let webcluster = match arealm.webcluster_oid {
        Some(wc) => webcluster(r, mrealm, &wc)?,
        None => None,
    };
    Ok(Some(ArealmPlan {
        arealm,
        group,
        placements,
        cluster_members,
        roles,
        webcluster,
    }))
}

/// The oids of the objects of `kind` in this management realm whose status a reconciler
/// acts on, with that status.
pub fn active(r: &Reader, mrealm: &Uuid, kind: Kind) -> Result<Vec<(Uuid, String)>, CallError> {
    let mut out = Vec::new();
    for (_, j) in r.list_json(kind, &format!("{mrealm}/"))? {
        let status = j.get("status").and_then(Json::as_str).unwrap_or_default();
        if !matches!(status, "STARTING" | "RUNNING" | "DEGRADED" | "STOPPING") {
            continue;
        }
        if let Some(oid) = j
            .get("oid")
            .and_then(Json::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            out.push((oid, status.to_owned()));
        }
    }
    Ok(out)
}

/// The member nodes of a router cluster (its status follows them; it runs nothing itself).
pub fn routercluster(
    r: &Reader,
    mrealm: &Uuid,
    oid: &Uuid,
) -> Result<Option<Vec<Member>>, CallError> {
    if r.get_json(Kind::RouterCluster, &format!("{mrealm}/{oid}"))?
        .is_none()
    {
        return Ok(None);
    }
    let mut members = Vec::new();
    for m in r.list::<RouterClusterNodeMembership>(&format!("{mrealm}/{oid}/"))? {
        if let Some(member) = member(r, mrealm, &m.node_oid)? {
            members.push(member);
        }
    }
    members.sort_by(|a, b| a.authid().cmp(b.authid()));
    Ok(Some(members))
}
