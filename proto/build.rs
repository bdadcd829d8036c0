//! Generates the prost types from `proto/*.proto` with a pure-Rust protobuf parser (protox), so no
//! machine needs a `protoc` binary.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from("proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read proto dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(&files, [&dir]).expect("parse .proto files");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate Rust code from .proto files");
}
