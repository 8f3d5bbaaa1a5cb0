//! Compiles the protobuf contract with `protox` (pure Rust, no protoc) and generates the tonic
//! services. The descriptor set is written beside the code so reflection can serve it.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "proto";
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
    // `sqlx::migrate!` embeds the migrations at compile time; rebuild when one is added,
    // changed or removed.
    println!("cargo:rerun-if-changed=migrations");

    let descriptors = protox::Compiler::new([PROTO_ROOT])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)?
        .file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("courier_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // `prost::Name` on every message, so the codec can name the type it failed to decode.
    let mut prost = tonic_prost_build::Config::new();
    prost.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::proto::codec::CourierCodec")
        .compile_fds_with_config(descriptors, prost)?;
    Ok(())
}
