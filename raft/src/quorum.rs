//! Majority arithmetic: what a quorum is, which index a quorum has matched, how an election stands.
//! Everything "does a majority agree" in the crate goes through these three functions.

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted the vote.
    Won,
    /// A majority rejected it: the election is lost.
    Lost,
    /// Neither yet.
    Pending,
}

/// The number of members that make a majority of `n` (n / 2 + 1).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The largest index that a majority of members have matched: the median of the match indexes,
/// taken from the top. 0 when there are no members.
pub fn committed_index(mut matched: Vec<u64>) -> u64 {
    if matched.is_empty() {
        return 0;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched[majority(matched.len()) - 1]
}

/// Tallies `votes` (member -> granted?) over `voters`; votes of non-members are ignored.
pub fn vote_result<'a>(
    voters: impl Iterator<Item = &'a u64>,
    votes: &std::collections::BTreeMap<u64, bool>,
) -> VoteResult {
    let (mut n, mut granted, mut rejected) = (0, 0, 0);
    for id in voters {
        n += 1;
        match votes.get(id) {
            Some(true) => granted += 1,
            Some(false) => rejected += 1,
            None => {}
        }
    }
    let q = majority(n);
    if granted >= q {
        VoteResult::Won
    } else if rejected >= q || n == 0 {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn test_committed_index() {
        assert_eq!(committed_index(vec![]), 0);
        assert_eq!(committed_index(vec![5]), 5);
        assert_eq!(committed_index(vec![5, 1]), 1);
        assert_eq!(committed_index(vec![5, 1, 3]), 3);
        assert_eq!(committed_index(vec![2, 5, 1, 3]), 2);
        assert_eq!(committed_index(vec![2, 5, 1, 3, 4]), 3);
    }

    #[test]
    fn test_vote_result() {
        let voters = [1u64, 2, 3];
        let mut votes = BTreeMap::new();
        assert_eq!(vote_result(voters.iter(), &votes), VoteResult::Pending);
        votes.insert(1, true);
        assert_eq!(vote_result(voters.iter(), &votes), VoteResult::Pending);
        votes.insert(9, true);
        assert_eq!(
            vote_result(voters.iter(), &votes),
            VoteResult::Pending,
            "a non-member's vote does not count"
        );
        votes.insert(2, false);
        assert_eq!(vote_result(voters.iter(), &votes), VoteResult::Pending);
        votes.insert(3, true);
        assert_eq!(vote_result(voters.iter(), &votes), VoteResult::Won);
        votes.insert(1, false);
        votes.insert(3, false);
        assert_eq!(vote_result(voters.iter(), &votes), VoteResult::Lost);
    }
}
