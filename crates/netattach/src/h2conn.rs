//! HTTP/2 to an `https` API server (kube-apiserver speaks h2): one TLS
//! connection per process, opened on the first request, and every request a
//! stream on it, so the status PATCH and the events of an ADD overlap on
//! one handshake. The connection is driven by a current-thread tokio runtime
//! that every calling thread enters with `block_on` (whichever thread holds
//! the runtime drives the socket for all of them): no runtime thread, no
//! thread pool. A server that picks `http/1.1` in ALPN is remembered, and the
//! caller uses its HTTP/1.1 transport from then on.

use std::cell::Cell;
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::api::ApiError;

/// Receive window per stream and per connection: a pod object arrives
/// without waiting for WINDOW_UPDATEs.
const WINDOW: u32 = 1 << 20;

/// One answer of the server.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// `Retry-After`, in seconds (the only form the API server sends).
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// One request: method, absolute URL, headers and body.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'static str, String)],
    pub body: Option<&'a str>,
}

enum State {
    /// No connection yet, or the last one broke.
    Idle,
    Ready(u64, SendRequest<Bytes>),
    /// The server chose HTTP/1.1.
    Http1,
}

/// The shared HTTP/2 connection of one API client.
pub(crate) struct H2Client {
    /// Always `Some` until dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    tls: tokio_rustls::TlsConnector,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    /// The connection and a generation counter, so a failed request drops
    /// only the connection it failed on.
    state: Mutex<(State, u64)>,
}

impl H2Client {
    /// Builds the runtime and TLS connector; connects on the first request.
    pub(crate) fn new(
        server: &str,
        tls_server_name: Option<&str>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ApiError> {
        let uri: http::Uri = server
            .parse()
            .map_err(|e| ApiError::Config(format!("server {server:?}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| ApiError::Config(format!("server {server:?} names no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = tls_server_name.unwrap_or(&host).to_owned();
        let server_name = ServerName::try_from(name)
            .map_err(|e| ApiError::Config(format!("TLS server name: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ApiError::Transport(format!("HTTP/2 runtime: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
            tls: tokio_rustls::TlsConnector::from(tls),
            port: uri.port_u16().unwrap_or(443),
            host,
            server_name,
            state: Mutex::new((State::Idle, 0)),
        })
    }

    /// Sends `req` as one stream within `timeout` (connect included);
    /// `None` when the server speaks only HTTP/1.1, or when called from
    /// inside a tokio runtime (which cannot block on another one).
    pub(crate) fn send(
        &self,
        req: &Request<'_>,
        timeout: Duration,
    ) -> Option<Result<Reply, ApiError>> {
        let runtime = self.runtime.as_ref()?;
        if tokio::runtime::Handle::try_current().is_ok() {
            return None;
        }
        let generation = Cell::new(None);
        runtime.block_on(async {
            let attempt = self.exchange(req, &generation);
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(reply)) => reply.map(Ok),
                Ok(Err(e)) => Some(Err(e)),
                Err(_) => {
                    // A silent peer: do not send the retry down the same hole.
                    if let Some(g) = generation.get() {
                        self.forget(g).await;
                    }
                    Some(Err(ApiError::Timeout(format!(
                        "{} {}: no answer within {timeout:?}",
                        req.method, req.url
                    ))))
                }
            }
        })
    }

    async fn exchange(
        &self,
        req: &Request<'_>,
        generation: &Cell<Option<u64>>,
    ) -> Result<Option<Reply>, ApiError> {
        // A request the server certainly did not process (the connection
        // closed while idle, a GOAWAY before its stream, REFUSED_STREAM) goes
        // once more on a new connection without spending a retry.
        let mut resent = false;
        loop {
            let Some((g, send)) = self.sender().await? else {
                return Ok(None);
            };
            generation.set(Some(g));
            let failed = match send.ready().await {
                Ok(send) => match round_trip(send, request_head(req)?, req.body).await {
                    Ok(reply) => return Ok(Some(reply)),
                    Err(f) => f,
                },
                Err(e) => Failed {
                    error: h2_error(&e),
                    unprocessed: true,
                },
            };
            self.forget(g).await;
            if !failed.unprocessed || resent {
                return Err(failed.error);
            }
            tracing::debug!(error = %failed.error, "HTTP/2 connection going away; resending on a new one");
            resent = true;
        }
    }

    /// The live connection, opening it if there is none; concurrent callers
    /// wait for the one handshake.
    async fn sender(&self) -> Result<Option<(u64, SendRequest<Bytes>)>, ApiError> {
        let mut state = self.state.lock().await;
        match &state.0 {
            State::Ready(g, send) => return Ok(Some((*g, send.clone()))),
            State::Http1 => return Ok(None),
            State::Idle => {}
        }
        match self.connect().await? {
            Some(send) => {
                state.1 += 1;
                state.0 = State::Ready(state.1, send.clone());
                Ok(Some((state.1, send)))
            }
            None => {
                state.0 = State::Http1;
                Ok(None)
            }
        }
    }

    /// Drops connection `generation` (if still current) so the next request
    /// opens a new one; streams still on it finish.
    async fn forget(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if matches!(state.0, State::Ready(g, _) if g == generation) {
            state.0 = State::Idle;
        }
    }

    async fn connect(&self) -> Result<Option<SendRequest<Bytes>>, ApiError> {
        let tcp = self.tcp().await?;
        tcp.set_nodelay(true).map_err(|e| io_error(&e))?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| io_error(&e))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            tracing::debug!(host = %self.host, "API server chose HTTP/1.1");
            return Ok(None);
        }
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| h2_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP/2 connection ended");
            }
        });
        tracing::debug!(host = %self.host, port = self.port, "HTTP/2 connection open");
        Ok(Some(send))
    }

    async fn tcp(&self) -> Result<TcpStream, ApiError> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| ApiError::Transport(format!("resolve {}: {e}", self.host)))?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => ApiError::Transport(format!("connect {}:{}: {e}", self.host, self.port)),
            None => ApiError::Transport(format!("resolve {}: no address", self.host)),
        })
    }
}

impl Drop for H2Client {
    /// Without waiting for the connection task or a DNS lookup thread, and
    /// allowed inside an async context (a plain drop of a runtime is not).
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn request_head(req: &Request<'_>) -> Result<http::Request<()>, ApiError> {
    let mut head = http::Request::builder().method(req.method).uri(req.url);
    for (name, value) in req.headers {
        head = head.header(*name, value.as_str());
    }
    // As Go's HTTP/2 client sends it: the server knows the body's size up front.
    if let Some(body) = req.body {
        head = head.header(http::header::CONTENT_LENGTH, body.len());
    }
    head.body(())
        .map_err(|e| ApiError::Config(format!("{} {}: {e}", req.method, req.url)))
}

/// A failed exchange; `unprocessed` when the server guarantees it did not
/// act on the request (RFC 9113 8.7), so sending it again is safe.
struct Failed {
    error: ApiError,
    unprocessed: bool,
}

impl From<h2::Error> for Failed {
    fn from(e: h2::Error) -> Self {
        let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM);
        Self {
            unprocessed: refused || (e.is_go_away() && e.is_remote()),
            error: h2_error(&e),
        }
    }
}

async fn round_trip(
    mut send: SendRequest<Bytes>,
    head: http::Request<()>,
    body: Option<&str>,
) -> Result<Reply, Failed> {
    let (response, mut stream) = send.send_request(head, body.is_none())?;
    if let Some(b) = body {
        let mut data = Bytes::copy_from_slice(b.as_bytes());
        while !data.is_empty() {
            stream.reserve_capacity(data.len());
            let granted = poll_fn(|cx| stream.poll_capacity(cx))
                .await
                .ok_or_else(|| Failed {
                    error: ApiError::Transport("HTTP/2 stream closed while sending".into()),
                    unprocessed: false,
                })??;
            let chunk = data.split_to(granted.min(data.len()));
            stream.send_data(chunk, data.is_empty())?;
        }
    }
    let response = response.await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut recv = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        body.extend_from_slice(&chunk);
        let _ = recv.flow_control().release_capacity(chunk.len());
    }
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

fn io_error(e: &std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::TimedOut => ApiError::Timeout(e.to_string()),
        _ => ApiError::Transport(e.to_string()),
    }
}

fn h2_error(e: &h2::Error) -> ApiError {
    match e.get_io() {
        Some(io) => io_error(io),
        None => ApiError::Transport(format!("HTTP/2: {e}")),
    }
}
