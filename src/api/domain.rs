//! `crossbarfabriccenter.domain.*`: status, version and license of the master.

use std::sync::Arc;

use super::{Ctx, handler};
use crate::router::internal::Handler;
use crate::wamp::Value;

pub(super) fn humanize(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} seconds"),
        60..3600 => format!("{} minutes", secs / 60),
        3600..86400 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86400),
    }
}

pub fn handlers(ctx: &Arc<Ctx>) -> Vec<(&'static str, Handler)> {
    let status = {
        let ctx = ctx.clone();
        handler(move |_| {
            let ctx = ctx.clone();
            async move {
                let up = ctx.started.elapsed().as_secs();
                Ok(Value::Dict(crate::dict! {
                    "type" => "domain",
                    "realm" => crate::auth::GLOBAL_REALM,
                    "now" => crate::clock::now_iso(),
                    "started" => ctx.started_iso.as_str(),
                    "uptime" => humanize(up),
                    // The reference ticks every 300 s.
                    "tick" => up / 300,
                }))
            }
        })
    };
    let version = {
        let ctx = ctx.clone();
        handler(move |_| {
            let id = ctx.replica.id;
            async move {
                Ok(Value::Dict(crate::dict! {
                    "fabric_master_ver" => env!("CARGO_PKG_VERSION"),
                    "supported_serializers" => Value::List(
                        ["cbor", "msgpack", "json"].iter().map(|s| Value::from(*s)).collect()
                    ),
                    "replica_id" => id,
                }))
            }
        })
    };
    let license = handler(|_| async {
        Ok(Value::Dict(crate::dict! {
            "product" => "fabric-master",
            "description" => "Crossbar.io-compatible master node",
            "terms" => "MIT",
            "features" => Value::Dict(crate::dict! { "xbr" => false }),
            "limits" => Value::Dict(crate::wamp::Dict::new()),
        }))
    });
    vec![
        ("crossbarfabriccenter.domain.get_status", status),
        ("crossbarfabriccenter.domain.get_version", version),
        ("crossbarfabriccenter.domain.get_license", license),
    ]
}
