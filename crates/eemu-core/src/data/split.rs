//! Evaluation split and canonical row order.
//!
//! Canonical order: rows sorted by (user, timestamp, input position); ties in time keep input
//! order. Leave-one-out split: per user with at least `min_interactions` rows, the last row is the
//! test row and the second-last the validation row; without timestamps both are drawn at random
//! with a key derived from (seed, user id), so the rule is reproducible and independent of other
//! users. Production mode keeps every row for training.
use sha2::{Digest, Sha256};

use super::{Ids, Interactions};
use crate::config::{SplitConfig, SplitMode};

/// Role of an interaction in the evaluation split (stored as its `u8` code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Split {
    Train = 0,
    Valid = 1,
    Test = 2,
}

impl Split {
    pub fn from_code(code: u8) -> Option<Split> {
        match code {
            0 => Some(Split::Train),
            1 => Some(Split::Valid),
            2 => Some(Split::Test),
            _ => None,
        }
    }
}

/// Row indices in canonical order: by user, then timestamp, then input position.
pub fn canonical_order(x: &Interactions) -> Vec<usize> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    match &x.timestamp {
        Some(t) => order.sort_by_key(|&r| (x.user[r], t[r], r)),
        None => order.sort_by_key(|&r| (x.user[r], r)),
    }
    order
}

/// Contiguous runs of equal users in rows that are sorted by user: `(user, start..end)`.
pub fn user_runs(users: &[u32]) -> impl Iterator<Item = (u32, std::ops::Range<usize>)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= users.len() {
            return None;
        }
        let u = users[start];
        let end = start + users[start..].iter().take_while(|&&v| v == u).count();
        let run = (u, start..end);
        start = end;
        Some(run)
    })
}

/// The split of each row of `x`, which must be in canonical order.
pub fn assign(x: &Interactions, user_ids: &Ids, config: &SplitConfig, seed: u64) -> Vec<Split> {
    let mut split = vec![Split::Train; x.len()];
    if config.mode == SplitMode::Production {
        return split;
    }
    for (user, run) in user_runs(&x.user) {
        let n = run.len();
        if n < config.min_interactions {
            continue;
        }
        let (test, valid) = if x.timestamp.is_some() { (n - 1, n - 2) } else { random_pair(user_ids, user, n, seed) };
        split[run.start + test] = Split::Test;
        split[run.start + valid] = Split::Valid;
    }
    split
}

/// Two distinct positions in `0..n` drawn from a key of (seed, user id): (test, validation).
fn random_pair(user_ids: &Ids, user: u32, n: usize, seed: u64) -> (usize, usize) {
    let mut h = Sha256::new();
    h.update(b"eemu-split-v1");
    h.update(seed.to_le_bytes());
    user_ids.hash_into(user, &mut h);
    let d = h.finalize();
    let a = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
    let test = (a % n as u64) as usize;
    let valid = (test + 1 + (b % (n as u64 - 1)) as usize) % n;
    (test, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(user: Vec<u32>, ts: Option<Vec<i64>>) -> Interactions {
        let n = user.len();
        Interactions { user, item: (0..n as u32).collect(), timestamp: ts, weight: None }
    }

    #[test]
    fn canonical_order_sorts_by_user_then_time_and_keeps_input_order_on_ties() {
        let x = rows(vec![1, 0, 1, 0, 0], Some(vec![5, 9, 5, 3, 9]));
        assert_eq!(canonical_order(&x), vec![3, 1, 4, 0, 2]);
    }

    #[test]
    fn leave_one_out_marks_last_as_test_and_second_last_as_validation() {
        let x = rows(vec![0, 0, 0, 0, 1, 1], Some(vec![1, 2, 3, 4, 1, 2]));
        let ids = Ids::Int(vec![10, 11]);
        let s = assign(&x, &ids, &SplitConfig::default(), 0);
        use Split::*;
        // user 1 has 2 rows < min_interactions (3): all training
        assert_eq!(s, vec![Train, Train, Valid, Test, Train, Train]);
    }

    #[test]
    fn production_mode_trains_on_everything() {
        let x = rows(vec![0, 0, 0, 0], Some(vec![1, 2, 3, 4]));
        let config = SplitConfig { mode: SplitMode::Production, ..SplitConfig::default() };
        assert!(assign(&x, &Ids::Int(vec![1]), &config, 0).iter().all(|&s| s == Split::Train));
    }

    #[test]
    fn without_timestamps_the_held_out_rows_are_distinct_and_seeded() {
        let x = rows(vec![0; 10], None);
        let ids = Ids::Int(vec![42]);
        let a = assign(&x, &ids, &SplitConfig::default(), 1);
        assert_eq!(a.iter().filter(|&&s| s == Split::Test).count(), 1);
        assert_eq!(a.iter().filter(|&&s| s == Split::Valid).count(), 1);
        assert_eq!(a, assign(&x, &ids, &SplitConfig::default(), 1));
        let differs = (2..40).any(|seed| assign(&x, &ids, &SplitConfig::default(), seed) != a);
        assert!(differs, "the seed must change the random pick");
    }

    #[test]
    fn user_runs_cover_sorted_rows() {
        let runs: Vec<_> = user_runs(&[0, 0, 2, 2, 2, 5]).collect();
        assert_eq!(runs, vec![(0, 0..2), (2, 2..5), (5, 5..6)]);
    }
}
