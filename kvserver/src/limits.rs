//! The size limits of the server, in one place: gRPC message size, key size, the room a raft entry
//! keeps beside its value, the envelope room of a raft message, and the bounds on a BatchRaw
//! stream. The configuration checks its raft sizes against them, the service refuses requests
//! past them, the server and the client set their gRPC codecs from them; this module imports
//! nothing of the crate, so none of those modules has to import another for a number.

/// Largest gRPC message the server and the client decode or encode (a value at the raft entry
/// limit fits, with room).
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024 * 1024;

/// Room left in a gRPC message for a raft message's envelope around its entries: a raft entry or
/// a raft message may be at most `MAX_GRPC_MESSAGE - RAFT_ENVELOPE_ROOM` bytes.
pub const RAFT_ENVELOPE_ROOM: usize = 64 * 1024;

/// Largest accepted key, in bytes.
pub const MAX_KEY_SIZE: usize = 4096;

/// Room kept in a raft entry for everything but the value (key, header, encoding): the largest
/// accepted value is the raft entry limit less this.
pub const ENTRY_OVERHEAD: usize = 8 * 1024;

/// Most requests of one BatchRaw stream in progress at once; the stream's next message is read
/// only when one finishes, so a client cannot queue unbounded work on the server.
pub const MAX_BATCH_INFLIGHT: usize = 4096;

/// Most answers in one BatchRaw response message.
pub const MAX_BATCH_ANSWERS: usize = 256;

/// A BatchRaw message (either way) takes no more requests or answers than fit in this many
/// bytes (one larger than that goes alone), so one big scan answer does not hold up the small
/// ones behind it for long, and no message outgrows the gRPC message limit by batching.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
