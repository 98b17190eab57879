//! The limits a listener enforces on its connections, their defaults, and fitting them to the
//! process's open-file limit.

use std::time::Duration;

/// Default [`ConnectionLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ConnectionLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ConnectionLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default [`ConnectionLimits::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 512;

/// File descriptors kept for everything but client connections (storage, audit files,
/// outbound connections): at least this many, or an eighth of the limit if that is more.
const FD_RESERVE_MIN: u64 = 256;

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may take to send one request's headers.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in progress: before its first
    /// request (TLS handshake included) and between requests.
    pub idle_timeout: Duration,
    /// Most connections open at once. A new connection beyond it closes the connection that has
    /// been idle longest; if none is idle, the new one is closed.
    pub max_connections: usize,
    /// Most connections open at once from one source address (IPv6: one /64), with the same
    /// shedding as `max_connections`; 0 means no per-address limit.
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

impl ConnectionLimits {
    /// These limits with `max_connections` lowered, if needed, so that client connections
    /// leave file descriptors free for the rest of the process under `open_file_limit`.
    pub fn fitted_to(self, open_file_limit: Option<u64>) -> ConnectionLimits {
        let Some(limit) = open_file_limit else {
            return self;
        };
        let reserve = FD_RESERVE_MIN.max(limit / 8).min(limit / 2);
        let usable = usize::try_from(limit - reserve)
            .unwrap_or(usize::MAX)
            .max(1);
        if self.max_connections <= usable {
            return self;
        }
        tracing::warn!(
            configured = self.max_connections,
            allowed = usable,
            open_file_limit = limit,
            "max connections lowered to fit the open-file limit (raise RLIMIT_NOFILE to allow more)"
        );
        ConnectionLimits {
            max_connections: usable,
            ..self
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit and returns the soft limit
/// in force afterwards (`None`: unlimited or unknown).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let now = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (now.current, now.maximum) {
            if current < maximum {
                let raised = Rlimit {
                    current: Some(maximum),
                    maximum: Some(maximum),
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => return Some(maximum),
                    Err(e) => {
                        tracing::warn!(error = %e, current, maximum, "could not raise the open-file limit");
                    }
                }
            }
        }
        now.current
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_leaves_file_descriptors_for_the_rest_of_the_process() {
        let wanted = ConnectionLimits {
            max_connections: 100_000,
            ..Default::default()
        };
        assert_eq!(wanted.fitted_to(Some(1024)).max_connections, 768);
        assert_eq!(wanted.fitted_to(Some(65536)).max_connections, 57344);
        assert_eq!(wanted.fitted_to(Some(300)).max_connections, 150);
        assert_eq!(wanted.fitted_to(None).max_connections, 100_000);
        let small = ConnectionLimits::default();
        assert_eq!(small.fitted_to(Some(1 << 20)), small);
    }
}
