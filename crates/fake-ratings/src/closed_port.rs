//! An address where connections are refused at once.

use std::net::SocketAddr;

/// A loopback port bound but never listening, so connections to it are refused at once. It
/// stays bound while this lives, so no other test's listener can be given the port (a
/// released port can be, and then a client still calling the "dead" URL would reach it).
#[derive(Debug)]
pub struct ClosedPort {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bound socket that holds the port.
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// Binds a fresh loopback port without listening on it. Panics if the system has no port
    /// to give (a test cannot go on without one).
    pub fn bind() -> ClosedPort {
        let (socket, addr) = tokio::net::TcpSocket::new_v4()
            .and_then(|socket| {
                socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                let addr = socket.local_addr()?;
                Ok((socket, addr))
            })
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        ClosedPort {
            url: format!("http://{addr}"),
            _socket: socket,
        }
    }
}
