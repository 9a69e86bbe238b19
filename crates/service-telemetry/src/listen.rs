//! The services' `--listen` flag: a socket address, with `localhost:PORT` accepted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Parses a socket address, accepting `localhost:PORT` as `127.0.0.1:PORT`; the error names
/// `example` (the service's default) as the expected shape.
pub fn parse_listen(value: &str, example: SocketAddr) -> Result<SocketAddr, String> {
    if let Some(port) = value.strip_prefix("localhost:") {
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("invalid port in {value:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is not an address like {example}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8500);

    #[test]
    fn addresses_and_localhost() {
        assert_eq!(
            parse_listen("127.0.0.1:0", EXAMPLE),
            Ok("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen("localhost:7", EXAMPLE),
            Ok("127.0.0.1:7".parse().unwrap())
        );
        assert_eq!(
            parse_listen("nowhere", EXAMPLE),
            Err("\"nowhere\" is not an address like 127.0.0.1:8500".into())
        );
        assert!(
            parse_listen("localhost:x", EXAMPLE)
                .unwrap_err()
                .contains("invalid port")
        );
    }
}
