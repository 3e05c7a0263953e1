//! The atelier.v1 gRPC contracts, generated from `proto/` at build time. Never edited by hand.

#![allow(clippy::all, missing_docs)]

/// Package `atelier.v1`.
pub mod v1 {
    tonic::include_proto!("atelier.v1");
}

/// Encoded `FileDescriptorSet` of every atelier.v1 file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/atelier_descriptor.bin"));
