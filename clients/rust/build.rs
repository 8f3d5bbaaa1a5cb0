//! Compiles Courier's protobuf contract (`../../proto`) with `protox` (pure Rust, no protoc):
//! clients for Producer, Consumer and Admin, and servers for Checker and Receiver, which a
//! producer and a push consumer implement.

const PROTO_ROOT: &str = "../../proto";
const PROTOS: &[&str] = &[
    "courier/v1/common.proto",
    "courier/v1/producer.proto",
    "courier/v1/consumer.proto",
    "courier/v1/admin.proto",
    "courier/v1/checker.proto",
    "courier/v1/receiver.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{proto}");
    }
    let descriptors = protox::Compiler::new([PROTO_ROOT])?
        .include_imports(true)
        .open_files(PROTOS)?
        .file_descriptor_set();
    // tonic-prost-build writes one file per package, so the Producer, Consumer and Admin
    // servers come along too; nothing here uses them.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
