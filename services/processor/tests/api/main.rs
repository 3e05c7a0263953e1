//! Integration tests: the real processor on 127.0.0.1:0 with its own storage, fed by a real HTTP source
//! server. Every test starts its own instances, so tests run in parallel without sharing state.

mod helpers;

mod auth;
mod cancellation;
mod capacity;
mod download;
mod ops;
mod process;
mod storage;
mod validation;
