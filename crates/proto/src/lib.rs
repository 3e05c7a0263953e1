//! The atelier.v1 gRPC contracts, generated from `proto/` at build time. Never edited by hand.

#![allow(clippy::all, missing_docs)]

pub mod codec;

/// Package `atelier.v1`.
pub mod v1 {
    tonic::include_proto!("atelier.v1");
}

/// Encoded `FileDescriptorSet` for the orchestrator's reflection: `JobService`, `AccountService`,
/// `StudioService` and the files they use.
pub const API_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/api_descriptor.bin"));

/// Encoded `FileDescriptorSet` for the processor's reflection: `ProcessorService` and the files it
/// uses, without the services of the files it imports.
pub const PROCESSOR_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/processor_descriptor.bin"));
