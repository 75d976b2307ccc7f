//! Who should own what: from the live instances and the partitions' records, the partitions this
//! instance should take and give up. Pure, so the rules are tested here; CAS on the records
//! settles any race between instances that planned from different views.
//!
//! Each instance targets its quota — the partitions divided evenly over the live instances, the
//! first `partitions % instances` (by sorted id) taking one more — keeps what it has up to it
//! (sticky: no churn when nothing changed), gives up the excess when another instance is there to
//! take it, and takes free or expired partitions while under quota. A partition nobody has taken
//! for a whole lease is taken by anyone, quota or not, so views that disagree cannot orphan it.

use std::collections::BTreeSet;

/// One partition as this instance sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// An owner renews it.
    Owned,
    /// Free (released, or never owned) or its owner stopped renewing for a lease: takeable.
    Takeable {
        /// And has been so for another whole lease: take it whatever the quota.
        orphaned: bool,
    },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub release: Vec<u32>,
    pub acquire: Vec<u32>,
}

/// This instance's share of `partitions` among `live` instances (sorted ids, `me` among them).
pub fn quota(me: &str, live: &[String], partitions: u32) -> u32 {
    let n = live.len().max(1) as u32;
    let rank = live.iter().position(|id| id == me).unwrap_or(0) as u32;
    partitions / n + u32::from(rank < partitions % n)
}

/// The partitions `me` should release and acquire, given what it `owns`.
pub fn plan(me: &str, live: &[String], seen: &[Seen], owns: &BTreeSet<u32>) -> Plan {
    let partitions = seen.len() as u32;
    let quota = quota(me, live, partitions) as usize;
    let n = live.len().max(1) as u32;
    let rank = live.iter().position(|id| id == me).unwrap_or(0) as u32;
    // "Home" partitions (p % n == rank) are preferred, so a layout settles the same way each time.
    let home = |p: &u32| *p % n == rank;
    let mut plan = Plan::default();
    if owns.len() > quota && live.len() > 1 {
        let mut givable: Vec<u32> = owns.iter().copied().collect();
        givable.sort_by_key(|p| (home(p), std::cmp::Reverse(*p)));
        plan.release = givable.into_iter().take(owns.len() - quota).collect();
    }
    let mut takeable: Vec<u32> = (0..partitions)
        .filter(|p| !owns.contains(p))
        .filter(|p| matches!(seen[*p as usize], Seen::Takeable { .. }))
        .collect();
    takeable.sort_by_key(|p| (!home(p), *p));
    let room = quota.saturating_sub(owns.len());
    for p in takeable {
        let orphaned = matches!(seen[p as usize], Seen::Takeable { orphaned: true });
        if plan.acquire.len() < room || orphaned {
            plan.acquire.push(p);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("i{i}")).collect()
    }

    fn free(partitions: usize) -> Vec<Seen> {
        vec![Seen::Takeable { orphaned: false }; partitions]
    }

    #[test]
    fn quotas_add_up_to_the_partitions() {
        for instances in 1..=7 {
            let live = ids(instances);
            let total: u32 = live.iter().map(|me| quota(me, &live, 16)).sum();
            assert_eq!(total, 16, "{instances} instances");
        }
        assert_eq!(quota("i0", &ids(3), 16), 6);
        assert_eq!(quota("i2", &ids(3), 16), 5);
    }

    #[test]
    fn a_lone_instance_takes_everything() {
        let plan = plan("i0", &ids(1), &free(4), &BTreeSet::new());
        assert_eq!(plan.acquire, vec![0, 1, 2, 3]);
        assert!(plan.release.is_empty());
    }

    #[test]
    fn a_newcomer_gets_its_share_and_the_old_owner_gives_it_up() {
        let live = ids(2);
        let owns: BTreeSet<u32> = (0..8).collect();
        let seen = vec![Seen::Owned; 8];
        let old = plan("i0", &live, &seen, &owns);
        // i0 keeps its home partitions (even numbers) and gives up the odd ones.
        assert_eq!(old.release, vec![7, 5, 3, 1]);
        // i1 takes what becomes free, its home partitions first.
        let mut after = seen.clone();
        for p in old.release {
            after[p as usize] = Seen::Takeable { orphaned: false };
        }
        let newcomer = plan("i1", &live, &after, &BTreeSet::new());
        assert_eq!(newcomer.acquire, vec![1, 3, 5, 7]);
    }

    #[test]
    fn under_quota_takes_expired_partitions_and_anyone_takes_orphans() {
        let live = ids(2);
        let mut seen = vec![Seen::Owned; 4];
        seen[3] = Seen::Takeable { orphaned: true };
        let owns: BTreeSet<u32> = [0, 2].into();
        // At quota (2 of 4), but partition 3 has been unowned for two leases.
        assert_eq!(plan("i0", &live, &seen, &owns).acquire, vec![3]);
        seen[3] = Seen::Takeable { orphaned: false };
        assert!(plan("i0", &live, &seen, &owns).acquire.is_empty());
    }

    #[test]
    fn alone_nothing_is_given_up() {
        let owns: BTreeSet<u32> = (0..4).collect();
        let plan = plan("i0", &ids(1), &[Seen::Owned; 4], &owns);
        assert!(plan.release.is_empty());
    }
}
