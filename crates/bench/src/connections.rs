//! How many TCP connections a client holds to some loopback ports: the established
//! sockets in `/proc/net/tcp` and `/proc/net/tcp6` whose remote end is one of the ports
//! (the client's ends; the servers' ends have the port on their local side).

/// Established connections to any of `ports`, from this machine (this network namespace).
pub fn established_to(ports: &[u16]) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .map(|table| count(&table, ports))
        .sum()
}

/// Rows of a `/proc/net/tcp` table in state ESTABLISHED (`01`) whose remote port is one of
/// `ports`.
fn count(table: &str, ports: &[u16]) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(2);
            let (Some(remote), Some(state)) = (fields.next(), fields.next()) else {
                return false;
            };
            let port = remote
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            state == "01" && port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_established_client_ends_to_the_ports() {
        // 0x1F90 = 8080, 0x1F91 = 8081, 0xA000 = 40960.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:A001 0100007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:A002 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 4 1
   4: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1
";
        assert_eq!(count(table, &[8080]), 1);
        assert_eq!(count(table, &[8080, 8081]), 2);
        assert_eq!(count(table, &[9999]), 0);
        assert_eq!(count("", &[8080]), 0);
    }

    #[test]
    fn reads_this_machines_tables() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        // The tables are the whole machine's: another connection to a port with the same
        // number (to another address) may come and go meanwhile, so ours is seen as one more.
        let before = super::established_to(&[port]);
        let _client = std::net::TcpStream::connect(("127.0.0.1", port));
        let _server = listener.accept();
        assert!(super::established_to(&[port]) > before);
    }
}
