//! Integration tests: the real processor on 127.0.0.1:0 with its own storage, fed by a real HTTP source
//! server and a fake model provider speaking the OpenAI Images API. Every test starts its own
//! instances, so tests run in parallel without sharing state.

mod helpers;

mod auth;
mod cache;
mod cancellation;
mod capacity;
mod download;
mod foreign;
mod matting;
mod matting_remote;
mod metrics;
mod ops;
mod pose_set;
mod process;
mod providers;
mod storage;
mod trace;
mod validation;
