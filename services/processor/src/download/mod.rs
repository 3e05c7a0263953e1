//! Source downloads go through the guarded downloader the gateway's studio proxy shares
//! ([`atelier_netguard::download`]).

pub use atelier_netguard::download::*;
