//! The `fake-kube-apiserver` binary: port file, seed file, quiet stdout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::POD;

#[test]
fn binary_writes_port_file_and_serves_seed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"default"}}]"#,
    )
    .unwrap();
    let port_file = dir.path().join("port");
    let exe = env!("CARGO_BIN_EXE_fake-kube-apiserver");
    let mut child = std::process::Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .arg("--seed")
        .arg(&seed)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_file.exists() {
        assert!(Instant::now() < deadline, "port file never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let addr = std::fs::read_to_string(&port_file).unwrap();
    let mut s = TcpStream::connect(addr.trim()).unwrap();
    s.write_all(format!("GET {POD} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    drop(guard);
    let mut out = String::new();
    let mut stdout = stdout;
    stdout.read_to_string(&mut out).unwrap();
    assert!(out.is_empty(), "stdout must stay empty: {out:?}");
}
