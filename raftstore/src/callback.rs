//! How a command's result gets back to whoever sent it: a boxed `FnOnce`, called once the command
//! was applied (or refused). In production it sends on a channel; in the simulator it records the
//! result in the simulated client's state.

use std::sync::Arc;

use proto::metapb::Region;
use proto::raft_cmdpb::{RaftCmdResponse, RaftResponseHeader};

use crate::engine::KvSnapshot;
use crate::errors::Error;

/// The answer to a Snap request: the region as of the read, and a view of the data at that point.
#[derive(Clone)]
pub struct RegionSnapshot {
    /// The region the view belongs to; reads must stay within its range.
    pub region: Region,
    /// The data as of the moment the Snap request was applied.
    pub snap: Arc<dyn KvSnapshot>,
}

impl std::fmt::Debug for RegionSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionSnapshot")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The result of a command.
#[derive(Debug, Default)]
pub struct CmdResponse {
    /// The response (its header carries any region error).
    pub resp: RaftCmdResponse,
    /// For a Snap request: the read view.
    pub snap: Option<RegionSnapshot>,
}

impl CmdResponse {
    /// A response carrying only an error (and the current term, when known).
    pub fn error(err: Error, term: u64) -> CmdResponse {
        CmdResponse {
            resp: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    error: Some(err.into_pb()),
                    current_term: term,
                    ..Default::default()
                }),
                ..Default::default()
            },
            snap: None,
        }
    }

    /// The region error, if the command failed.
    pub fn region_error(&self) -> Option<&proto::errorpb::Error> {
        self.resp.header.as_ref().and_then(|h| h.error.as_ref())
    }
}

/// Called once with the command's result.
pub type Callback = Box<dyn FnOnce(CmdResponse) + Send>;
