//! The background thread every HTTP fake serves from: its own current-thread
//! runtime (so sync tests and spawned binaries can use the fake alike) and a
//! stop signal sent on drop.

use std::future::IntoFuture;
use std::net::TcpListener;
use std::thread::JoinHandle;

/// A server running on its own thread until dropped.
#[derive(Debug)]
pub(crate) struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve(listener)` on a thread named `name` until the result is
    /// dropped. `listener` is already bound (so the caller knows its address,
    /// and a socket bound inside a test namespace stays in that namespace).
    pub(crate) fn spawn<F>(
        name: String,
        listener: TcpListener,
        serve: impl FnOnce(tokio::net::TcpListener) -> F + Send + 'static,
    ) -> std::io::Result<Self>
    where
        F: IntoFuture,
    {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let serving = serve(listener).into_future();
                // Dropping the runtime afterwards cancels open keep-alive
                // connections, so Drop never waits on a client.
                tokio::select! {
                    _ = serving => {}
                    _ = stop_rx => {}
                }
            });
        })?;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
