//! Binding a service's listener with room for a burst of connections.
//!
//! `tokio::net::TcpListener::bind` listens with a backlog of 128: the kernel holds at most
//! that many handshaken connections the accept loop has not taken yet. When more arrive at
//! once (a burst of clients, or an attacker opening hundreds of idle connections), Linux
//! drops the handshakes beyond it and the clients retry after their 1 s retransmission
//! timeout, so a normal request that lands in such a burst waits a second or more.
//! [`bind`] listens with a backlog of [`LISTEN_BACKLOG`] instead (the kernel caps it at
//! `net.core.somaxconn`, 4096 on current kernels).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The listen backlog [`bind`] asks for.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (with `SO_REUSEADDR`, as tokio's `bind` does, so a restarted service can
/// take its port back at once) and listens with a backlog of [`LISTEN_BACKLOG`].
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// let listener = serving::listen::bind("127.0.0.1:0".parse().expect("address")).await?;
/// # Ok(()) }
/// ```
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_beyond_128_connections_is_taken_without_accepting() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: all 300 handshakes must complete in the kernel's queue, which
        // with tokio's default backlog of 128 would leave the rest retrying for a second.
        let mut clients = Vec::new();
        for _ in 0..300 {
            let connect = tokio::net::TcpStream::connect(addr);
            let client = tokio::time::timeout(std::time::Duration::from_millis(500), connect)
                .await
                .expect("connected without a retransmission")
                .unwrap();
            clients.push(client);
        }
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(
            accepted.peer_addr().unwrap(),
            clients[0].local_addr().unwrap()
        );
    }
}
