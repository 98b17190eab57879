//! Process hygiene: no core dumps (they would hold key material), memory locked so key
//! material is not swapped out, where the OS allows.

/// Disables core dumps and ptrace-style dumping of this process; locks memory unless
/// `lock_memory` is false. Failures are logged, not fatal: what is and is not protected is
/// documented in the README's security model.
pub fn harden(lock_memory: bool) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        if let Err(e) = setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        ) {
            tracing::warn!(error = %e, "could not disable core dumps (RLIMIT_CORE)");
        }
        if let Err(e) =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        {
            tracing::warn!(error = %e, "could not mark the process non-dumpable");
        }
        if lock_memory {
            use rustix::mm::{mlockall, MlockAllFlags};
            match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE) {
                Ok(()) => {
                    tracing::info!("memory locked (mlockall): key material is never swapped out")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not lock memory (mlockall); key material may be swapped out. Grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK")
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = lock_memory;
}
