//! The Postgres store's sockets have `TCP_NODELAY`.
//!
//! sqlx 0.9.0 stopped setting it (upstream issue 4335, fixed in 0.9.1): with Nagle's
//! algorithm on, a small write behind an unacknowledged one waits for the peer's delayed
//! ACK, and issuance grew a 40 ms tail. This test reads the option off the process's own
//! connections so an upgrade cannot bring the tail back silently.

use std::net::SocketAddr;

use rustix::fd::OwnedFd;
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

use crate::Backend;
use crate::testing::TestDb;

/// Duplicates every socket this process holds whose peer is `port`.
fn sockets_to(port: u16) -> Vec<OwnedFd> {
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd of this process");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("list own fds") {
        let Ok(entry) = entry else { continue };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(raw) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        let Ok(fd) = pidfd_getfd(&pidfd, raw, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let peer = rustix::net::getpeername(&fd)
            .ok()
            .flatten()
            .and_then(|addr| SocketAddr::try_from(addr).ok());
        if peer.is_some_and(|peer| peer.port() == port) {
            found.push(fd);
        }
    }
    found
}

#[tokio::test]
async fn postgres_connections_have_tcp_nodelay() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    // Migrations ran on the pool; make sure a connection is open and idle in it.
    store.revision().await.expect("read the revision");
    let port = url_port(&db.url);
    let sockets = sockets_to(port);
    assert!(!sockets.is_empty(), "no socket to the Postgres port {port}");
    for socket in &sockets {
        assert!(
            rustix::net::sockopt::tcp_nodelay(socket).expect("read TCP_NODELAY"),
            "a Postgres connection has Nagle's algorithm on"
        );
    }
}

fn url_port(url: &str) -> u16 {
    url.split('@')
        .nth(1)
        .and_then(|host| host.split('/').next())
        .and_then(|host| host.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5432)
}
