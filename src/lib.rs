//! Hoist: a resumable upload server (tus 1.0 and more), one actor per active upload,
//! state in Diesel over SQLite or PostgreSQL, bytes on disk.

pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod error_tracking;
pub mod fd_usage;
pub mod http;
pub mod limits;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod reconcile;
pub mod session;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upload;
