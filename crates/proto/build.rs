//! Compiles `proto/atelier/v1` with protox (no protoc needed) and writes, for gRPC reflection, one file
//! descriptor set per server: each holds the files its services need and names only the services that
//! server really serves, so reflection never describes a service the server would answer NOT_FOUND.

use std::path::{Path, PathBuf};

use prost::Message;

/// The orchestrator's public API.
const API_SERVICES: [&str; 3] = [
    "atelier.v1.JobService",
    "atelier.v1.AccountService",
    "atelier.v1.StudioService",
];
/// The processor's internal API.
const PROCESSOR_SERVICES: [&str; 1] = ["atelier.v1.ProcessorService"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "atelier/v1/common.proto",
        "atelier/v1/jobs.proto",
        "atelier/v1/accounts.proto",
        "atelier/v1/studio.proto",
        "atelier/v1/processor.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let api = served_by(
        &root,
        &[
            "atelier/v1/jobs.proto",
            "atelier/v1/accounts.proto",
            "atelier/v1/studio.proto",
        ],
        &API_SERVICES,
    )?;
    std::fs::write(out.join("api_descriptor.bin"), api.encode_to_vec())?;
    let processor = served_by(&root, &["atelier/v1/processor.proto"], &PROCESSOR_SERVICES)?;
    std::fs::write(
        out.join("processor_descriptor.bin"),
        processor.encode_to_vec(),
    )?;
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::SmallBufferCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// `files` with their imports, keeping only the `services` among the services they declare. A file
/// that loses a service (imported only for its messages) also loses its source info, whose paths
/// would point at the removed service.
fn served_by(
    root: &Path,
    files: &[&str],
    services: &[&str],
) -> Result<prost_types::FileDescriptorSet, Box<dyn std::error::Error>> {
    let mut fds = protox::compile(files, [root])?;
    for file in &mut fds.file {
        let package = file.package().to_string();
        let before = file.service.len();
        file.service
            .retain(|s| services.contains(&format!("{package}.{}", s.name()).as_str()));
        if file.service.len() != before {
            file.source_code_info = None;
        }
    }
    let declared: Vec<String> = fds
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    for service in services {
        if !declared.iter().any(|d| d == service) {
            return Err(format!("{service} is not declared in {files:?}").into());
        }
    }
    Ok(fds)
}
