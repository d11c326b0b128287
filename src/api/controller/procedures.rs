//! The controller's procedures (`get_status`, `get_nodes`, `get_node*`…) and the shapes of
//! the nodes they answer with.

use super::*;

impl Controller {
    /// `Node.marshal()` of the reference's run-time map.
    pub(super) fn node_info(&self, oid: Uuid, authid: &str, online: bool) -> Value {
        let a = self
            .tracked
            .lock()
            .activity
            .get(&oid)
            .cloned()
            .unwrap_or_default();
        Value::Dict(crate::dict! {
            "id" => oid.to_string(),
            "authid" => authid,
            "status" => if online { "online" } else { "offline" },
            "last_active" => a.last_active,
            "last_activity" => a.last_activity as u64,
            "workers" => a.workers.unwrap_or_else(|| Value::Dict(Dict::new())),
            "counter" => a.counter.map(Value::from).unwrap_or(Value::Null),
            "time" => a.time.map(Value::from).unwrap_or(Value::Null),
        })
    }

    /// A stored node with its run-time status (the shape of `get_node`).
    pub(super) fn node_with_status(&self, node: &Node, online: bool) -> Value {
        let mut v = to_value(serde_json::to_value(node).unwrap_or_default());
        let a = self.tracked.lock().activity.get(&node.oid).cloned();
        if let Value::Dict(d) = &mut v {
            let a = a.unwrap_or_default();
            d.insert(
                "heartbeat".into(),
                a.counter.map(Value::from).unwrap_or(Value::Null),
            );
            d.insert(
                "timestamp".into(),
                a.time.map(Value::from).unwrap_or(Value::Null),
            );
            d.insert(
                "status".into(),
                if online { "online" } else { "offline" }.into(),
            );
        }
        v
    }

    pub fn handlers(self: &Arc<Self>) -> Vec<(String, Handler)> {
        let p = "crossbarfabriccenter.mrealm.";
        let status = {
            let me = self.clone();
            handler(move |_| {
                let me = me.clone();
                async move {
                    let up = me.started.elapsed().as_secs();
                    Ok(Value::Dict(crate::dict! {
                        "type" => "management",
                        "realm" => me.scope.mrealm_name.as_str(),
                        "now" => crate::clock::now_iso(),
                        "started" => me.started_iso.as_str(),
                        "uptime" => crate::api::domain::humanize(up),
                        "tick" => me.tick.load(Ordering::Relaxed),
                    }))
                }
            })
        };
        let nodes = {
            let me = self.clone();
            handler(move |inv| {
                let me = me.clone();
                async move {
                    let status = inv.arg(0).or_else(|| inv.kwarg("status")).cloned();
                    let status = match &status {
                        None | Some(Value::Null) => None,
                        Some(Value::Str(s)) if s == "online" || s == "offline" => {
                            Some(s.as_str() == "online")
                        }
                        Some(other) => {
                            return Err(crate::api::errors::bad_argument(format!(
                                "status must be \"online\" or \"offline\", not {other:?}"
                            )));
                        }
                    };
                    let names = inv
                        .arg(1)
                        .or_else(|| inv.kwarg("return_names"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let r = me.scope.ctx.replica.read().await?;
                    let nodes = me.paired_nodes(&r)?;
                    let mut out = Vec::new();
                    for n in nodes {
                        let online = r
                            .get::<Presence>(&n.oid.to_string())?
                            .is_some_and(|p| p.mrealm_oid == me.scope.mrealm_oid);
                        if status.is_some_and(|want| want != online) {
                            continue;
                        }
                        out.push(if names {
                            Value::from(n.authid.clone().unwrap_or_default())
                        } else {
                            Value::from(n.oid.to_string())
                        });
                    }
                    if names {
                        out.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                    }
                    Ok(Value::List(out))
                }
            })
        };
        let node = {
            let me = self.clone();
            handler(move |inv| {
                let me = me.clone();
                async move {
                    let oid = oid_arg(&inv, 0, "node_oid")?;
                    me.get_node(NodeRef::Oid(oid)).await
                }
            })
        };
        let node_by_authid = {
            let me = self.clone();
            handler(move |inv| {
                let me = me.clone();
                async move {
                    let authid = str_arg(&inv, 0, "node_authid")?.to_owned();
                    me.get_node(NodeRef::Authid(&authid)).await
                }
            })
        };
        vec![
            (format!("{p}get_status"), status),
            (format!("{p}get_nodes"), nodes),
            (format!("{p}get_node"), node),
            (format!("{p}get_node_by_authid"), node_by_authid),
        ]
    }

    pub(super) fn paired_nodes(&self, r: &crate::store::Reader) -> Result<Vec<Node>, StoreError> {
        let prefix = format!("{}/", self.scope.mrealm_oid);
        let mut nodes = Vec::new();
        for key in r.index_keys(Index::NodeByMrealm, &prefix)? {
            let oid = key.strip_prefix(&prefix).unwrap_or(&key);
            if let Some(n) = r.get::<Node>(oid)? {
                nodes.push(n);
            }
        }
        Ok(nodes)
    }

    pub(super) async fn get_node(&self, by: NodeRef<'_>) -> Result<Value, CallError> {
        let r = self.scope.ctx.replica.read().await?;
        let node: Option<Node> = match by {
            NodeRef::Oid(oid) => r.get(&oid.to_string())?,
            NodeRef::Authid(a) => r.lookup(
                Index::NodeByAuthid,
                &format!("{}/{a}", self.scope.mrealm_oid),
            )?,
        };
        let node = node
            .filter(|n| n.mrealm_oid == Some(self.scope.mrealm_oid))
            .ok_or_else(|| {
                CallError::new(
                    "crossbar.error.no_such_object",
                    format!(
                        "no node {by} in management realm {}",
                        self.scope.mrealm_name
                    ),
                )
            })?;
        let online = r
            .get::<Presence>(&node.oid.to_string())?
            .is_some_and(|p| p.mrealm_oid == self.scope.mrealm_oid);
        Ok(self.node_with_status(&node, online))
    }
}

pub(super) enum NodeRef<'a> {
    Oid(Uuid),
    Authid(&'a str),
}

impl std::fmt::Display for NodeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeRef::Oid(o) => write!(f, "{o}"),
            NodeRef::Authid(a) => write!(f, "{a:?}"),
        }
    }
}
