//! The origin servers' connection handlers. Each has an idle deadline so nothing outlives a stuck peer.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use super::record::{ConnEnd, ConnHandle};

/// How long an origin connection may sit idle before the origin closes it.
pub const IDLE: Duration = Duration::from_secs(30);

const BUF: usize = 32 * 1024;

/// A connection the origin can abort with a TCP reset (SO_LINGER 0, then dropped).
pub trait Resettable {
    fn reset(&self);
}

impl Resettable for TcpStream {
    fn reset(&self) {
        let _ = self.set_zero_linger();
    }
}

impl Resettable for tokio_rustls::server::TlsStream<TcpStream> {
    fn reset(&self) {
        let _ = self.get_ref().0.set_zero_linger();
    }
}

/// Echo every byte; propagate the peer's half-close.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin + Resettable>(s: S, rec: ConnHandle) {
    read_loop(s, rec, true).await
}

/// Read, count and hash; never send. Close when the peer does.
pub async fn sink<S: AsyncRead + AsyncWrite + Unpin + Resettable>(s: S, rec: ConnHandle) {
    read_loop(s, rec, false).await
}

/// The echo origin aborts its connection with a TCP reset when a read starts with this (after echoing nothing
/// of it): how a scenario makes the target reset a tunnel (`send = "connect-harness:reset"`).
pub const RESET_COMMAND: &[u8] = b"connect-harness:reset";

/// Records what the peer sends, echoing it if asked, until EOF (answered by closing our side), an error or
/// the idle deadline.
async fn read_loop<S: AsyncRead + AsyncWrite + Unpin + Resettable>(mut s: S, rec: ConnHandle, echo: bool) {
    let mut buf = vec![0u8; BUF];
    loop {
        match timeout(IDLE, s.read(&mut buf)).await {
            Ok(Ok(0)) => {
                rec.end(ConnEnd::Eof);
                let _ = timeout(IDLE, s.shutdown()).await;
                return;
            }
            Ok(Ok(n)) if echo && buf[..n].starts_with(RESET_COMMAND) => {
                rec.received(&buf[..n]);
                rec.end(ConnEnd::OriginClosed);
                s.reset();
                return;
            }
            Ok(Ok(n)) => {
                rec.received(&buf[..n]);
                if echo {
                    match timeout(IDLE, s.write_all(&buf[..n])).await {
                        Ok(Ok(())) => rec.sent(n),
                        _ => return rec.end(ConnEnd::Error),
                    }
                }
            }
            Ok(Err(_)) => return rec.end(ConnEnd::Error),
            Err(_) => return rec.end(ConnEnd::OriginClosed),
        }
    }
}

/// Send the banner at once, close the write side, then drain what the peer sends.
pub async fn banner(mut s: TcpStream, rec: ConnHandle, banner: Arc<Vec<u8>>) {
    match timeout(IDLE, s.write_all(&banner)).await {
        Ok(Ok(())) => rec.sent(banner.len()),
        _ => return rec.end(ConnEnd::Error),
    }
    let _ = timeout(IDLE, s.shutdown()).await;
    rec.end(ConnEnd::OriginClosed);
    let mut buf = vec![0u8; BUF];
    while let Ok(Ok(n)) = timeout(IDLE, s.read(&mut buf)).await {
        if n == 0 {
            return;
        }
        rec.received(&buf[..n]);
    }
}

/// Answer one HTTP request (head read with a size bound) with 200 and a short body, then close.
pub async fn http(mut s: TcpStream, rec: ConnHandle) {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match timeout(IDLE, s.read(&mut buf)).await {
            Ok(Ok(0)) => return rec.end(ConnEnd::Eof),
            Ok(Ok(n)) => {
                rec.received(&buf[..n]);
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 64 * 1024 {
                    break;
                }
            }
            _ => return rec.end(ConnEnd::Error),
        }
    }
    let body = b"connect-harness http origin\n";
    let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let mut out = resp.into_bytes();
    out.extend_from_slice(body);
    if let Ok(Ok(())) = timeout(IDLE, s.write_all(&out)).await {
        rec.sent(out.len());
    }
    let _ = timeout(IDLE, s.shutdown()).await;
    rec.end(ConnEnd::OriginClosed);
}

/// Accept TLS with the origin's own certificate, record the ClientHello's SNI and ALPN, then echo.
pub async fn tls(s: TcpStream, rec: ConnHandle, identity: Arc<super::TlsIdentity>) {
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), s);
    let start = match timeout(IDLE, acceptor).await {
        Ok(Ok(start)) => start,
        _ => return rec.end(ConnEnd::Error),
    };
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let alpn: Vec<Vec<u8>> = hello.alpn().map(|it| it.map(<[u8]>::to_vec).collect()).unwrap_or_default();
    rec.tls_hello(sni, alpn.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect());
    let config = match identity.server_config(alpn) {
        Ok(c) => c,
        Err(_) => return rec.end(ConnEnd::Error),
    };
    match timeout(IDLE, start.into_stream(config)).await {
        Ok(Ok(stream)) => echo(stream, rec).await,
        _ => rec.end(ConnEnd::Error),
    }
}
