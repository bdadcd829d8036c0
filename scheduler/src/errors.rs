//! The typed errors of the scheduler's cluster model and scheduling logic (TinyKV reports them as
//! ad-hoc `errors.Errorf` values in `scheduler/server/cluster.go` and `core/errors.go`).

use proto::metapb::RegionEpoch;
use thiserror::Error;

/// An error of the cluster model, an operator or a scheduler.
#[derive(Debug, Error)]
pub enum Error {
    /// A region heartbeat (or a region in a request) is older than what the scheduler knows.
    #[error(
        "region {region_id} is stale: epoch {{version {version}, conf_ver {conf_ver}}} is older than \
         region {known_id}'s {{version {known_version}, conf_ver {known_conf_ver}}}"
    )]
    StaleRegion {
        /// The region that was reported.
        region_id: u64,
        /// Its version.
        version: u64,
        /// Its conf version.
        conf_ver: u64,
        /// The known region it conflicts with (the same id, or an overlapping one).
        known_id: u64,
        /// The known region's version.
        known_version: u64,
        /// The known region's conf version.
        known_conf_ver: u64,
    },
    /// A region heartbeat listed no peer.
    #[error("invalid region {0}: zero peers")]
    ZeroPeers(u64),
    /// No region is known for a key or an id.
    #[error("region not found: {0}")]
    RegionNotFound(String),
    /// A reported split is not two adjacent halves.
    #[error("invalid split: {0}")]
    InvalidSplit(String),
    /// The store is not known.
    #[error("store {0} not found")]
    StoreNotFound(u64),
    /// The store has been removed (tombstone); it may not come back or heartbeat.
    #[error("store {0} has been removed")]
    StoreTombstone(u64),
    /// The store is already blocked.
    #[error("store {0} is blocked")]
    StoreBlocked(u64),
    /// A store id of 0 was given.
    #[error("invalid store id 0")]
    InvalidStoreId,
    /// Another live store already uses the address.
    #[error("duplicated store address {address}: already registered by store {other}")]
    DuplicatedAddress {
        /// The address.
        address: String,
        /// The store that has it.
        other: u64,
    },
    /// A store is still up and may only be buried by force.
    #[error("store {0} is still up, remove it gracefully first")]
    StoreStillUp(u64),
    /// An operator could not be built: no store can take the region's leadership.
    #[error("no suitable store to become region {0}'s leader")]
    NoLeaderTarget(u64),
    /// An operator kind name is unknown.
    #[error("unknown operator kind flag: {0}")]
    UnknownOperatorKind(String),
    /// The id allocator failed.
    #[error("id allocation failed: {0}")]
    IdAlloc(String),
}

impl Error {
    /// The stale-region error of `region` (`epoch`) against the known region `known_id` (`known`).
    pub fn stale(region_id: u64, epoch: &RegionEpoch, known_id: u64, known: &RegionEpoch) -> Error {
        Error::StaleRegion {
            region_id,
            version: epoch.version,
            conf_ver: epoch.conf_ver,
            known_id,
            known_version: known.version,
            known_conf_ver: known.conf_ver,
        }
    }
}

/// Results of the scheduler's logic.
pub type Result<T> = std::result::Result<T, Error>;
