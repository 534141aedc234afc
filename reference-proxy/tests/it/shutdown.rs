//! Graceful shutdown: stop accepting, let open tunnels finish within the grace period, then end.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn open_tunnels_drain_then_shutdown_returns() {
    let echo = echo_server().await;
    let mut cfg = config();
    cfg.limits.shutdown_grace = Duration::from_secs(30);
    let proxy = start(cfg).await;
    let addr = proxy.plain_addrs()[0];
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{}", echo.port())).await.0, 200);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        proxy.shutdown().await;
        let _ = done_tx.send(());
    });
    // New connections are refused once the listener is gone.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener still accepts after shutdown began");
    // The open tunnel still works, and shutdown waits for it.
    s.write_all(b"during shutdown").await.unwrap();
    let mut buf = [0u8; 15];
    within("echo during drain", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"during shutdown");
    assert!(done_rx.try_recv().is_err(), "shutdown returned while a tunnel was open");
    s.shutdown().await.unwrap();
    let _ = read_all(&mut s).await;
    within("shutdown after the last tunnel", done_rx).await.unwrap();
}

#[tokio::test]
async fn grace_period_bounds_shutdown() {
    let echo = echo_server().await;
    let mut cfg = config();
    cfg.limits.shutdown_grace = Duration::from_millis(200);
    let proxy = start(cfg).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{}", echo.port())).await.0, 200);
    // The tunnel stays open and idle; shutdown must still return, closing it.
    within("shutdown with a stuck tunnel", proxy.shutdown()).await;
    let (got, _) = read_all(&mut s).await;
    assert!(got.is_empty());
}
