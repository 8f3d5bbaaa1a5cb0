//! Generated protobuf and tonic code for `courier.v1`, the descriptor set that server
//! reflection serves, and the codec the generated code uses.

pub mod codec;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod courier {
    pub mod v1 {
        tonic::include_proto!("courier.v1");
    }
}

pub use courier::v1::*;

/// Encoded `FileDescriptorSet` of every Courier proto and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/courier_descriptor.bin"));
