//! Generates the gRPC client and server of `service Scheduler` (proto/proto/schedulerpb.proto) with
//! tonic, parsing the .proto files with protox (no `protoc` needed). The message types come from
//! the `proto` crate (extern paths), so there is one Rust type per protobuf message.

fn main() {
    let dir = std::path::PathBuf::from("../proto/proto");
    let file = dir.join("schedulerpb.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&dir]).expect("parse schedulerpb.proto");
    let mut b = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true);
    for pkg in ["eraftpb", "metapb", "schedulerpb"] {
        b = b.extern_path(format!(".{pkg}"), format!("::proto::{pkg}"));
    }
    b.compile_fds(fds).expect("generate the Scheduler service");
}
