//! A metadata server that answers with one byte every half second: the
//! client's per-read timeout alone would never fire, so every call must end
//! by its overall budget instead of hanging the ADD or the agent's pass.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_imds::{ClientConfig, OciImds, RetryPolicy};

/// Serves every connection: headers promising a large body, then one byte
/// per 500 ms until the client goes away or the test ends.
fn trickle_server(stop: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
                );
                while !stop.load(Ordering::SeqCst) {
                    if conn.write_all(b" ").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
    });
    url
}

#[test]
fn trickling_server_is_cut_off_by_the_overall_deadline() {
    let stop = Arc::new(AtomicBool::new(false));
    let url = trickle_server(Arc::clone(&stop));
    let client = OciImds::new(ClientConfig {
        base_url: url,
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_secs(1),
        retry: RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            budget: Duration::from_secs(3),
        },
    });
    let t0 = Instant::now();
    let result = client.vnics();
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert!(result.is_err(), "a body that never completes is an error");
    // Budget 3 s; one more attempt of at most 1.5 s may have started
    // just before the budget ran out.
    assert!(took < Duration::from_millis(4800), "took {took:?}");
}
