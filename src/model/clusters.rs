//! Database servers on a host: Postgres clusters and Redis servers, derived
//! from the `database` declarations that place a primary or a follower there.
//!
//! Shared Postgres databases of one primary host live in one cluster named
//! `main`; a dedicated database gets a cluster of its own, named after it.
//! Every Redis database is a server of its own. Followers mirror their
//! primary's servers.

use super::{DatabaseId, Engine, Fleet, HostId, Tier};

/// The Postgres major version of Debian 12, whose packages the hosts run.
pub const POSTGRES_VERSION: &str = "15";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub port: u16,
    /// The databases it holds.
    pub databases: Vec<DatabaseId>,
    pub primary: HostId,
    /// Where its standby runs, if anywhere.
    pub standby: Option<HostId>,
}

impl Cluster {
    pub fn data_directory(&self) -> String {
        format!("/var/lib/postgresql/{POSTGRES_VERSION}/{}", self.name)
    }

    pub fn config_directory(&self) -> String {
        format!("/etc/postgresql/{POSTGRES_VERSION}/{}", self.name)
    }
}

/// Every Postgres cluster of the fleet, by (primary, name).
pub fn clusters(fleet: &Fleet) -> Vec<Cluster> {
    let mut clusters: Vec<Cluster> = Vec::new();
    for (id, db) in fleet
        .databases
        .iter()
        .enumerate()
        .filter(|(_, d)| d.engine == Engine::Postgres)
    {
        let name = match db.tier {
            Tier::Shared => "main".to_string(),
            Tier::Dedicated => db.name.clone(),
        };
        match clusters
            .iter_mut()
            .find(|c| c.primary == db.primary && c.name == name)
        {
            Some(cluster) => {
                cluster.databases.push(id);
                cluster.standby = cluster.standby.or(db.follower);
            }
            None => clusters.push(Cluster {
                name,
                port: db.port,
                databases: vec![id],
                primary: db.primary,
                standby: db.follower,
            }),
        }
    }
    clusters
}

/// The clusters a host runs, as primary or standby.
pub fn clusters_on(fleet: &Fleet, host: HostId) -> Vec<Cluster> {
    clusters(fleet)
        .into_iter()
        .filter(|c| c.primary == host || c.standby == Some(host))
        .collect()
}

/// The Redis databases a host serves, as primary or replica.
pub fn redis_on(fleet: &Fleet, host: HostId) -> Vec<DatabaseId> {
    (0..fleet.databases.len())
        .filter(|d| {
            let db = &fleet.databases[*d];
            db.engine == Engine::Redis && (db.primary == host || db.follower == Some(host))
        })
        .collect()
}
