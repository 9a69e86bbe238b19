//! `make-certs DIR`: a throwaway CA and a server certificate for localhost / 127.0.0.1 (and a
//! client pair), written to DIR as ca.pem, server.pem, server.key, client.pem, client.key.
//! Used by `make run TLS=1`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: make-certs DIR");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let ca = test_certs::TestCa::new("resilient-discovery throwaway CA");
    match ca.write_to(&dir, &["localhost", "127.0.0.1", "::1"]) {
        Ok(()) => {
            println!("made a throwaway CA and certificates in {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-certs: cannot write to {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
