//! Idle tunnels: open `n` tunnels to the echo origin (64 at a time), check each relays one byte, and hold them
//! open while the caller reads the proxy's memory.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::{Instant, timeout_at},
};

use super::path::{OriginAddrs, Route, To, open};
use crate::client::Io;

/// Tunnels held open, and why the others did not open.
pub struct Held {
    pub tunnels: Vec<Box<dyn Io>>,
    /// The first error by kind, and how often it happened.
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// Opens up to `n` tunnels; stops early after `max_errors` failures (a proxy at its own limit refuses the rest).
pub async fn hold(route: &Route, origins: &OriginAddrs, n: usize, open_timeout: Duration, max_errors: u64) -> Held {
    let mut held = Held { tunnels: Vec::with_capacity(n), errors: Default::default() };
    let mut failures = 0u64;
    while held.tunnels.len() < n && failures < max_errors {
        let batch = (n - held.tunnels.len()).min(64);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let (route, origins) = (route.clone(), *origins);
            set.spawn(async move {
                let deadline = Instant::now() + open_timeout;
                let mut io = open(&route, &origins, To::Echo, deadline, true).await.map_err(|e| e.kind())?;
                // One byte there and back: the tunnel really reaches the origin.
                let mut b = [0u8; 1];
                match timeout_at(deadline, async {
                    io.write_all(b"i").await?;
                    io.read_exact(&mut b).await
                })
                .await
                {
                    Ok(Ok(_)) => Ok(io),
                    Ok(Err(_)) => Err("closed".to_string()),
                    Err(_) => Err("timeout".to_string()),
                }
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(io)) => held.tunnels.push(io),
                Ok(Err(kind)) => {
                    failures += 1;
                    *held.errors.entry(kind).or_default() += 1;
                }
                Err(_) => failures += 1,
            }
        }
    }
    held
}
