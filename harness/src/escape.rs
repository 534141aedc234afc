//! Printable, bounded renderings of raw bytes for transcripts and messages.

/// Escapes bytes as text: printable ASCII as is, `\r` `\n` `\t` `\\`, others as `\xNN`. At most `max`
/// input bytes are rendered; a longer input ends with `…(+N bytes)`.
pub fn escape(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 16);
    for &b in bytes.iter().take(max) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > max {
        out.push_str(&format!("…(+{} bytes)", bytes.len() - max));
    }
    out
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_and_bounds() {
        assert_eq!(super::escape(b"A\r\n\x00\\", 10), "A\\r\\n\\x00\\\\");
        assert_eq!(super::escape(b"abcdef", 2), "ab…(+4 bytes)");
    }
}
