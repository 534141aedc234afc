//! Steps that use an open tunnel: bulk transfers, reading what the target sent, TLS through the tunnel.

use std::time::Duration;

use rand::{RngCore, SeedableRng, rngs::StdRng};
use sha2::Digest;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::{Instant, timeout_at},
};

use super::{
    State,
    report::{StepReport, StepResult},
};
use crate::{
    client::ReadEvent,
    escape,
    scenario::step::{ExpectBanner, ExpectEof, InnerTls},
};

/// Minimum transfer rate assumed when scaling deadlines of bulk steps (bytes per second).
pub const MIN_RATE: u64 = 512 << 10;
/// Bulk transfers move data in blocks of this size.
const BLOCK: usize = 64 * 1024;

/// The bytes of block `k` of a bulk stream: a random base block with the block number in its first
/// 8 bytes, so dropped, duplicated or reordered data never compares equal. Cheap, unlike a PRNG per byte.
fn bulk_block(base: &[u8], k: u64, out: &mut [u8]) {
    out.copy_from_slice(&base[..out.len()]);
    let tag = k.to_le_bytes();
    let n = out.len().min(8);
    for i in 0..n {
        out[i] ^= tag[i];
    }
}

/// Sends `n` random bytes through the tunnel while reading them back, comparing as they arrive.
pub(super) async fn echo(st: &mut State<'_>, index: usize, n: u64) -> StepReport {
    let lvl = st.level;
    let deadline = st.deadline(None) + Duration::from_millis(n * 1000 / MIN_RATE);
    let mut base = vec![0u8; BLOCK];
    StdRng::seed_from_u64(rand::random()).fill_bytes(&mut base);
    let leftover = std::mem::take(&mut st.conn.buf);
    let mut sent_hash = std::mem::take(&mut st.sent_hash);
    let (mut rd, mut wr) = tokio::io::split(st.conn.io());
    let base_ref = &base;
    let writer = async {
        let mut block = vec![0u8; BLOCK];
        let mut off = 0u64;
        while off < n {
            let len = ((n - off) as usize).min(BLOCK);
            bulk_block(base_ref, off / BLOCK as u64, &mut block[..len]);
            wr.write_all(&block[..len]).await?;
            sent_hash.update(&block[..len]);
            off += len as u64;
        }
        wr.flush().await?;
        Ok::<u64, std::io::Error>(n)
    };
    let reader = async {
        let mut expected = vec![0u8; BLOCK];
        let mut got: u64 = 0;
        let mut first_diff: Option<u64> = None;
        let mut buf = vec![0u8; BLOCK];
        // Compares `data` with the stream at offset `got`, block by block.
        let mut check = |mut data: &[u8], got: &mut u64, first_diff: &mut Option<u64>| {
            while !data.is_empty() && first_diff.is_none() {
                if *got >= n {
                    *first_diff = Some(*got);
                    return;
                }
                let k = *got / BLOCK as u64;
                let in_block = (*got % BLOCK as u64) as usize;
                let block_len = ((n - k * BLOCK as u64) as usize).min(BLOCK);
                bulk_block(base_ref, k, &mut expected[..block_len]);
                let take = data.len().min(block_len - in_block);
                if data[..take] != expected[in_block..in_block + take] {
                    let at = data[..take].iter().zip(&expected[in_block..]).position(|(a, b)| a != b).unwrap_or(0);
                    *first_diff = Some(*got + at as u64);
                    return;
                }
                *got += take as u64;
                data = &data[take..];
            }
        };
        check(&leftover, &mut got, &mut first_diff);
        while got < n && first_diff.is_none() {
            let k = rd.read(&mut buf).await?;
            if k == 0 {
                return Ok((got, first_diff, true));
            }
            check(&buf[..k], &mut got, &mut first_diff);
        }
        Ok::<_, std::io::Error>((got, first_diff, false))
    };
    // A reader that sees wrong bytes or EOF ends the step at once; a stuck writer must not hold it.
    let both = async {
        tokio::pin!(writer, reader);
        tokio::select! {
            w = &mut writer => {
                let r = reader.await;
                (w, r)
            }
            r = &mut reader => {
                let failed = !matches!(r, Ok((got, None, false)) if got == n);
                let w = if failed { Ok(0) } else { writer.await };
                (w, r)
            }
        }
    };
    let joined = timeout_at(deadline, both).await;
    st.sent_hash = sent_hash;
    let result = match joined {
        Err(_) => {
            st.conn.transcript.event(format!("echo of {n} bytes timed out"));
            return StepReport::new(
                index,
                "echo",
                lvl,
                StepResult::TimedOut,
                format!("echo of {n} bytes did not complete"),
            );
        }
        Ok(r) => r,
    };
    match result {
        (Ok(_), Ok((got, None, false))) if got == n => {
            st.sent_len += n;
            st.conn.transcript.bulk(n, n, format!("echo: {n} random bytes sent and received intact"));
            StepReport::new(index, "echo", lvl, StepResult::Passed, format!("{n} bytes echoed intact"))
        }
        (w, r) => {
            let detail = match (w, r) {
                (Err(e), _) => format!("writing failed: {e}"),
                (_, Err(e)) => format!("reading failed: {e}"),
                (_, Ok((got, Some(at), _))) => {
                    format!("echoed bytes differ from those sent at offset {at} (received {got})")
                }
                (_, Ok((got, None, true))) => format!("EOF after {got} of {n} echoed bytes"),
                (_, Ok((got, None, false))) => format!("received {got} of {n} bytes"),
            };
            st.conn.transcript.event(format!("echo failed: {detail}"));
            StepReport::new(index, "echo", lvl, StepResult::Mismatch, detail)
        }
    }
}

/// Sends `n` random bytes into the tunnel, hashing them for origin checks.
pub(super) async fn send_random(st: &mut State<'_>, index: usize, step_kind: &'static str, n: &u64) -> StepReport {
    let lvl = st.level;
    let kind = step_kind;
    let ok = |detail: String| StepReport::new(index, kind, lvl, StepResult::Passed, detail);
    let bad = |detail: String| StepReport::new(index, kind, lvl, StepResult::Mismatch, detail);
    let deadline = st.deadline(None) + Duration::from_millis(n * 1000 / MIN_RATE);
    let mut base = vec![0u8; BLOCK];
    StdRng::seed_from_u64(rand::random()).fill_bytes(&mut base);
    let mut left = *n as usize;
    let mut block = vec![0u8; BLOCK];
    st.conn.transcript.bulk(*n, 0, format!("sending {n} random bytes"));
    while left > 0 {
        let len = left.min(BLOCK);
        bulk_block(&base, ((*n as usize - left) / BLOCK) as u64, &mut block[..len]);
        let w = timeout_at(deadline, st.conn.io().write_all(&block[..len])).await;
        match w {
            Err(_) => {
                return StepReport::new(index, kind, lvl, StepResult::TimedOut, "write stalled".to_string());
            }
            Ok(Err(e)) => return bad(format!("write failed after {} bytes: {e}", *n as usize - left)),
            Ok(Ok(())) => st.note_tunnel_sent(&block[..len]),
        }
        left -= len;
    }
    let _ = timeout_at(deadline, st.conn.io().flush()).await;
    ok(format!("sent {n} random bytes"))
}

/// Reads exactly the expected bytes from the tunnel.
pub(super) async fn expect_data(st: &mut State<'_>, index: usize, step_kind: &'static str, text: &str) -> StepReport {
    let lvl = st.level;
    let harness = |detail: String| StepReport::new(index, step_kind, lvl, StepResult::Error, detail);
    let kind = step_kind;
    let ok = |detail: String| StepReport::new(index, kind, lvl, StepResult::Passed, detail);
    let bad = |detail: String| StepReport::new(index, kind, lvl, StepResult::Mismatch, detail);
    let want = match st.expand(text) {
        Ok(d) => d,
        Err(e) => return harness(e),
    };
    let deadline = st.deadline(None);
    let ev = st.conn.fill(want.len(), deadline).await;
    let got: Vec<u8> = st.conn.buf.drain(..st.conn.buf.len().min(want.len())).collect();
    let mut r = if got == want {
        ok(format!("received the {} expected bytes", want.len()))
    } else if matches!(ev, ReadEvent::Timeout) {
        StepReport::new(
            index,
            kind,
            lvl,
            StepResult::TimedOut,
            format!("received {} of {} bytes", got.len(), want.len()),
        )
    } else if got.len() < want.len() {
        bad(format!("received {} of {} bytes, then the connection ended", got.len(), want.len()))
    } else {
        bad(format!("received {} bytes that differ from the expected ones", got.len()))
    };
    if r.result != StepResult::Passed {
        r.acceptable = vec![escape::escape(&want, 200)];
        r.observed = Some(escape::escape(&got, 200));
    }
    r
}

/// Reads the banner origin's banner, then expects EOF.
pub(super) async fn expect_banner(
    st: &mut State<'_>,
    index: usize,
    step_kind: &'static str,
    b: &ExpectBanner,
) -> StepReport {
    let lvl = st.level;
    let kind = step_kind;
    let lvl = b.level.unwrap_or(lvl);
    let banner = st.origins.banner.clone();
    let deadline = st.deadline(None);
    let limit = banner.len() + BLOCK;
    let mut ev = ReadEvent::Data(0);
    while st.conn.buf.len() <= limit {
        ev = st.conn.read_more(BLOCK, deadline).await;
        if !matches!(ev, ReadEvent::Data(_)) {
            break;
        }
    }
    let got = std::mem::take(&mut st.conn.buf);
    // A connection that ends with an error after the whole banner (over TLS: a TCP FIN without close_notify)
    // delivered the banner; as in `expect_eof`, the end counts. The missing close_notify is RFC 9112 §9.8's
    // business, not this step's.
    let strict = b.close_notify && st.transport == crate::scenario::Transport::Tls;
    let eof = matches!(ev, ReadEvent::Eof) || (!strict && matches!(ev, ReadEvent::Error(_)) && got == *banner);
    let mut r = if got == *banner && eof {
        let end = match &ev {
            ReadEvent::Error(e) => format!("then the connection ended with an error ({e})"),
            _ => "then EOF".to_string(),
        };
        StepReport::new(index, kind, lvl, StepResult::Passed, format!("banner of {} bytes, {end}", got.len()))
    } else {
        let diff = got.iter().zip(banner.iter()).position(|(a, b)| a != b);
        let what = match (diff, got.len().cmp(&banner.len())) {
            (Some(at), _) => format!("bytes differ from the banner at offset {at}"),
            (None, std::cmp::Ordering::Less) => format!("only {} of {} banner bytes", got.len(), banner.len()),
            (None, std::cmp::Ordering::Greater) => {
                format!("{} bytes beyond the banner", got.len() - banner.len())
            }
            (None, std::cmp::Ordering::Equal) => "the whole banner".to_string(),
        };
        let end = match &ev {
            ReadEvent::Eof => "then EOF".to_string(),
            ReadEvent::Timeout => "and no EOF before the deadline".to_string(),
            ReadEvent::Error(e) => format!("then an error ({e})"),
            ReadEvent::Data(_) => "and more".to_string(),
        };
        let result = if matches!(ev, ReadEvent::Timeout) { StepResult::TimedOut } else { StepResult::Mismatch };
        let why = if strict && got == *banner && matches!(ev, ReadEvent::Error(_)) {
            format!("{what}, {end}: the proxy closed the TLS connection without a close_notify alert")
        } else {
            format!("{what}, {end}")
        };
        StepReport::new(index, kind, lvl, result, why)
    };
    if r.result != StepResult::Passed {
        r.acceptable = vec![format!("the {}-byte banner, then EOF", banner.len())];
    }
    r
}

/// Reads until the proxy closes the connection.
pub(super) async fn expect_eof(st: &mut State<'_>, index: usize, step_kind: &'static str, e: &ExpectEof) -> StepReport {
    let lvl = st.level;
    let kind = step_kind;
    let lvl = e.level.unwrap_or(lvl);
    let deadline = st.deadline(e.timeout_ms);
    let (n, ev) = st.conn.drain_to_eof(1 << 20, deadline).await;
    let (result, detail) = match ev {
        ReadEvent::Eof if e.error.is_some() => (
            StepResult::Mismatch,
            format!("a clean EOF (END_STREAM or FIN) after {n} more bytes, expected an error ({:?})", e.error),
        ),
        ReadEvent::Eof => (StepResult::Passed, format!("EOF after {n} more bytes")),
        ReadEvent::Error(err) if e.error.as_ref().is_some_and(|want| !err.to_string().contains(want.as_str())) => (
            StepResult::Mismatch,
            format!("the connection ended with the error ({err}) after {n} bytes, expected {:?}", e.error),
        ),
        ReadEvent::Error(err) => {
            (StepResult::Passed, format!("connection ended with an error ({err}) after {n} bytes"))
        }
        ReadEvent::Timeout => (StepResult::TimedOut, format!("still open after {n} bytes")),
        ReadEvent::Data(_) => (StepResult::Mismatch, format!("more than {n} bytes and no EOF")),
    };
    StepReport::new(index, kind, lvl, result, detail)
}

/// Expects no byte for `ms` milliseconds.
pub(super) async fn expect_silence(st: &mut State<'_>, index: usize, step_kind: &'static str, ms: &u64) -> StepReport {
    let lvl = st.level;
    let kind = step_kind;
    let ok = |detail: String| StepReport::new(index, kind, lvl, StepResult::Passed, detail);
    let bad = |detail: String| StepReport::new(index, kind, lvl, StepResult::Mismatch, detail);
    if !st.conn.buf.is_empty() {
        return bad(format!("{} bytes already arrived: {}", st.conn.buf.len(), escape::escape(&st.conn.buf, 80)));
    }
    let deadline = Instant::now() + Duration::from_millis(*ms);
    match st.conn.read_more(BLOCK, deadline).await {
        ReadEvent::Timeout => ok(format!("no bytes for {ms} ms")),
        ReadEvent::Data(n) => bad(format!("{n} bytes arrived: {}", escape::escape(&st.conn.buf, 80))),
        ReadEvent::Eof => bad("the proxy closed the connection".into()),
        ReadEvent::Error(e) => bad(format!("the connection failed: {e}")),
    }
}

pub(super) async fn inner_tls(st: &mut State<'_>, index: usize, t: &InnerTls) -> StepReport {
    let lvl = st.level;
    let sni = t.sni.clone().unwrap_or_else(|| "target.test".into());
    let name = match rustls::pki_types::ServerName::try_from(sni.clone()) {
        Ok(n) => n,
        Err(_) => {
            return StepReport::new(index, "tls_handshake", lvl, StepResult::Error, format!("bad SNI {sni:?}"));
        }
    };
    let (config, pinned) = match crate::client::tls::pinned_client_config(st.origins.tls_cert.clone(), &t.alpn) {
        Ok(c) => c,
        Err(e) => return StepReport::new(index, "tls_handshake", lvl, StepResult::Error, e),
    };
    let deadline = st.deadline(None);
    let r = st.conn.start_tls(config, name, deadline).await;
    let pin = *pinned.lock().expect("pin lock");
    match (r, pin) {
        (Ok(_), _) => StepReport::new(
            index,
            "tls_handshake",
            lvl,
            StepResult::Passed,
            "handshake with the TLS origin's own certificate".to_string(),
        ),
        (Err(_), Some(false)) => StepReport::new(
            index,
            "tls_handshake",
            lvl,
            StepResult::Mismatch,
            "the certificate in the tunnel is not the TLS origin's: the proxy terminated the inner TLS".to_string(),
        ),
        (Err(e @ crate::client::TlsError::TimedOut), _) => {
            StepReport::new(index, "tls_handshake", lvl, StepResult::TimedOut, e.to_string())
        }
        (Err(e), _) => StepReport::new(index, "tls_handshake", lvl, StepResult::Mismatch, e.to_string()),
    }
}
