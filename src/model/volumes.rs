//! Where an app's shared media lives: with `media` on two runners or more,
//! each store is a replicated GlusterFS volume (lang/design-media.md). Its
//! bricks are on the app's first three runners (replica 3), or, with two
//! runners, on both and an arbiter brick (metadata only) on a third host:
//! the app's database host, else another host that neither runs the app
//! nor balances (a balancer faces the internet). Every runner mounts it.
//! Three bricks, so losing any one host keeps the volume writable and no
//! split brain can happen. Every connection, management and I/O, is TLS
//! with the fleet CA's certificates (`speaks_gluster`, `allowed_names`).
//! Pure.

use super::{AppId, Fleet, HostId};

/// Where the bricks are, on each brick host.
pub const BRICKS_DIR: &str = "/srv/sitec/media-bricks";

/// The hosts holding the bricks of `app`'s media volumes, in `volume
/// create` order (the arbiter last), and whether the last is an arbiter.
/// `None` when the app keeps media on its one runner, or when no volume
/// can be made (two runners and no third host: E281 says what to add).
pub fn bricks(fleet: &Fleet, app: AppId) -> Option<(Vec<HostId>, bool)> {
    let runners = &fleet.placement[app];
    if fleet.apps[app].media.is_empty() || runners.len() < 2 {
        return None;
    }
    if runners.len() >= 3 {
        return Some((runners[..3].to_vec(), false));
    }
    let arbiter = arbiter_host(fleet, app)?;
    Some((vec![runners[0], runners[1], arbiter], true))
}

/// The host for a two-runner app's arbiter brick: the first by name of
/// its databases' primaries, else of the other hosts, that neither runs
/// the app nor has the `balancer` role (by name: the spec's order changes
/// nothing).
pub fn arbiter_host(fleet: &Fleet, app: AppId) -> Option<HostId> {
    let runners = &fleet.placement[app];
    let fits = |h: &HostId| !runners.contains(h) && !fleet.has_role(*h, "balancer");
    let by_name = |mut hosts: Vec<HostId>| {
        hosts.sort_by(|a, b| fleet.hosts[*a].name.cmp(&fleet.hosts[*b].name));
        hosts
    };
    let databases = (fleet.apps[app].bindings.iter()).map(|b| fleet.databases[b.database].primary);
    let databases = by_name(databases.collect());
    let others = by_name((0..fleet.hosts.len()).collect());
    databases.into_iter().chain(others).find(fits)
}

/// Whether `app`'s media stores are GlusterFS volumes.
pub fn shared(fleet: &Fleet, app: AppId) -> bool {
    bricks(fleet, app).is_some()
}

/// Whether `host` holds a brick of any volume (it runs glusterd).
pub fn holds_bricks(fleet: &Fleet, host: HostId) -> bool {
    (0..fleet.apps.len()).any(|app| bricks(fleet, app).is_some_and(|(b, _)| b.contains(&host)))
}

/// Every host holding a brick of any volume, in host order.
pub fn brick_hosts(fleet: &Fleet) -> Vec<HostId> {
    (0..fleet.hosts.len())
        .filter(|h| holds_bricks(fleet, *h))
        .collect()
}

/// Whether `host` speaks GlusterFS (and gets its TLS certificate): it
/// holds a brick, or mounts a volume (a runner of an app whose media is
/// shared).
pub fn speaks_gluster(fleet: &Fleet, host: HostId) -> bool {
    holds_bricks(fleet, host)
        || (0..fleet.apps.len())
            .any(|app| shared(fleet, app) && fleet.placement[app].contains(&host))
}

/// The hosts whose certificates `app`'s volumes accept (`auth.ssl-allow`,
/// by common name, which is the host's name): its brick hosts (their
/// self-heal daemons are clients of the other bricks) and its runners, by
/// name.
pub fn allowed_names(fleet: &Fleet, app: AppId) -> Vec<String> {
    let bricks = bricks(fleet, app).map(|(b, _)| b).unwrap_or_default();
    let mut names: Vec<String> = (bricks.iter().chain(&fleet.placement[app]))
        .map(|h| fleet.hosts[*h].name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The volume's name: `APP_STORE` (a store name holds no `_`, so two
/// stores never share one; GlusterFS takes letters, digits, `-`, `_`).
pub fn volume_name(app: &str, store: &str) -> String {
    format!("{app}_{store}")
}

/// A brick's folder: `/srv/sitec/media-bricks/APP.STORE` (`.` is in
/// neither name).
pub fn brick_dir(app: &str, store: &str) -> String {
    format!("{BRICKS_DIR}/{app}.{store}")
}

/// systemd's name for the mount unit of `path`, without its `.mount`
/// (`systemd-escape --path`): `/` between names becomes `-`, and a byte
/// that is not a letter, digit, `_` or a `.` past the first is `\xNN`.
pub fn mount_unit(path: &str) -> String {
    let mut out = String::new();
    for (i, part) in path.trim_matches('/').split('/').enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, b) in part.bytes().enumerate() {
            if b.is_ascii_alphanumeric() || b == b'_' || (b == b'.' && j > 0) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_unit_names_as_systemd_escape_does() {
        assert_eq!(
            mount_unit("/srv/sitec/apps/blog/media/uploads"),
            "srv-sitec-apps-blog-media-uploads"
        );
        assert_eq!(
            mount_unit("/srv/sitec/apps/my-blog/media/up_2"),
            "srv-sitec-apps-my\\x2dblog-media-up_2"
        );
    }

    #[test]
    fn a_volume_name_and_brick_are_one_per_store() {
        assert_ne!(volume_name("a-b", "c"), volume_name("a", "b-c"));
        assert_eq!(
            brick_dir("blog", "uploads"),
            "/srv/sitec/media-bricks/blog.uploads"
        );
    }
}
