//! The server thread: a single-threaded tokio runtime that accepts Zeek
//! peers (with TLS as configured) and runs one task per peering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{Ssl, SslAcceptor};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::peer;
use crate::Shared;

/// Runs until `shutdown` turns true; then ends every peering (their
/// subscriptions are removed) within a few seconds.
pub fn run(
    listener: std::net::TcpListener,
    tls: Option<SslAcceptor>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            log::error!("zeek: cannot start the runtime: {e}");
            shared.host.report_failure(&format!("zeek: cannot start the runtime: {e}"));
            return;
        }
    };
    runtime.block_on(serve(listener, tls.map(Arc::new), shared, shutdown));
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<SslAcceptor>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
        Ok(l) => l,
        Err(e) => {
            shared.host.report_failure(&format!("zeek: cannot use the listening socket: {e}"));
            return;
        }
    };
    let peers = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next() => continue,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: say so, wait a little.
                log::warn!("zeek: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if peers.load(Ordering::Relaxed) >= shared.cfg.max_peers {
            log::warn!("zeek: refusing {addr}: already {} peers (max_peers)", shared.cfg.max_peers);
            continue;
        }
        let _ = stream.set_nodelay(true);
        peers.fetch_add(1, Ordering::Relaxed);
        let (shared, tls, shutdown, peers) = (shared.clone(), tls.clone(), shutdown.clone(), peers.clone());
        tasks.spawn(async move {
            let name = addr.to_string();
            match tls {
                None => {
                    peer::run(stream, shared, name, shutdown).await;
                }
                Some(acceptor) => match tls_accept(&acceptor, stream).await {
                    Ok(s) => {
                        peer::run(s, shared, name, shutdown).await;
                    }
                    Err(e) => log::warn!("zeek: TLS handshake with {name} failed: {e}"),
                },
            }
            peers.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Let each peering end (it removes its subscriptions), briefly.
    let drained =
        tokio::time::timeout(Duration::from_secs(3), async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log::warn!("zeek: some peerings did not end in time");
    }
}

async fn tls_accept(
    acceptor: &SslAcceptor,
    stream: tokio::net::TcpStream,
) -> Result<tokio_openssl::SslStream<tokio::net::TcpStream>, String> {
    let ssl = Ssl::new(acceptor.context()).map_err(|e| e.to_string())?;
    let mut s = tokio_openssl::SslStream::new(ssl, stream).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(30), std::pin::Pin::new(&mut s).accept())
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(s)
}
