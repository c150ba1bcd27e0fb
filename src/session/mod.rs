//! One `UploadSession` actor per active upload: the only writer of that upload.

mod actor;
mod append;
mod janitor;
mod job;
mod pending;
mod registry;
mod release_listener;
mod runtime;

pub use append::AppendSpec;
pub use janitor::{abort_orphans, run_janitor_loop, sweep_once, SweepPolicy, SweepReport};
pub use registry::{SessionDeps, SessionRegistry, Submitted};
pub use release_listener::run_release_listener;
pub use runtime::{sessions_runtime, IO_THREAD_NAME};
