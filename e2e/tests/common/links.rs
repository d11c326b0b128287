//! Faults on single links between replica containers: packets from chosen peers dropped (all of
//! them, or a random share) on their way into one replica. Docker's network disconnect cuts a
//! container off from everyone; these make one-way links, bridges (a replica that sees both
//! sides of a split) and lossy links.
//!
//! The rules live in the container's network namespace, put there with the host's `nsenter`
//! and `iptables` (the image is `FROM scratch` and has neither), in a chain of their own, so
//! that healing removes exactly them. They match the peers' addresses on the cluster's network
//! only: the test's clients, which come in over Docker's default bridge, are never dropped.

use super::{Replica, docker};

/// The chain that holds the rules; jumped to first from `INPUT`.
const CHAIN: &str = "FABRIC_NEMESIS";

/// One replica's incoming peer links.
pub struct Links {
    pid: String,
    /// Its address on the cluster's network, as the other replicas' packets carry it.
    pub ip: String,
}

impl Links {
    /// Sets up the (empty) chain in `replica`'s namespace.
    pub fn new(replica: &Replica, network: &str) -> Links {
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", replica.container.id()]);
        let ip = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            replica.container.id(),
        ]);
        assert!(
            !ip.is_empty(),
            "{} has an address on {network}",
            replica.name
        );
        let links = Links { pid, ip };
        links.iptables(&["-N", CHAIN]);
        links.iptables(&["-I", "INPUT", "1", "-j", CHAIN]);
        links
    }

    /// Drops every packet from `sources` (their `ip`s): a one-way cut, `sources` → this one.
    pub fn drop_from(&self, sources: &[&Links]) {
        for s in sources {
            self.iptables(&["-A", CHAIN, "-s", &s.ip, "-j", "DROP"]);
        }
    }

    /// Drops a random share (`0.0..1.0`) of the packets from `sources`: a lossy link.
    pub fn lose_from(&self, sources: &[&Links], share: f64) {
        let probability = format!("{share:.3}");
        for s in sources {
            self.iptables(&[
                "-A",
                CHAIN,
                "-s",
                &s.ip,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ]);
        }
    }

    /// Every link into this replica whole again.
    pub fn heal(&self) {
        self.iptables(&["-F", CHAIN]);
    }

    fn iptables(&self, args: &[&str]) {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &self.pid, "-n", "iptables", "-w"])
            .args(args)
            .output()
            .expect("nsenter runs (the Docker tests run as root)");
        assert!(
            out.status.success(),
            "iptables {} in pid {}'s namespace: {}",
            args.join(" "),
            self.pid,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Cuts `a` and `b` apart both ways.
pub fn cut_between(a: &[&Links], b: &[&Links]) {
    for x in a {
        x.drop_from(b);
    }
    for y in b {
        y.drop_from(a);
    }
}
