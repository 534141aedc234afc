//! Byte classes from RFC 9110 §5.6.2 (tchar) and §5.5 (field-vchar), as lookup tables.

const fn tchar_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        i += 1;
    }
    t
}

/// Bytes allowed in a field value: HTAB, SP, VCHAR and obs-text. Everything else (CTLs including CR, LF, NUL,
/// and DEL) is refused.
const fn value_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i == 0x09 || (i >= 0x20 && i != 0x7f);
        i += 1;
    }
    t
}

static TCHAR: [bool; 256] = tchar_table();
static VALUE: [bool; 256] = value_table();

/// The length of the longest prefix of tchar, four bytes per step (names and methods are short, so the
/// bytewise loop's per-byte branch dominated parsing them).
#[inline]
pub fn tchar_prefix(bytes: &[u8]) -> usize {
    let mut done = 0;
    for c in bytes.chunks_exact(4) {
        if !(TCHAR[c[0] as usize] & TCHAR[c[1] as usize] & TCHAR[c[2] as usize] & TCHAR[c[3] as usize]) {
            break;
        }
        done += 4;
    }
    done + bytes[done..].iter().position(|&b| !TCHAR[b as usize]).unwrap_or(bytes.len() - done)
}

/// Visible ASCII: the only bytes this parser accepts in a request-target.
#[inline]
pub fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is below `n` (n <= 0x80) or equal to DEL. A flag can be wrong only
/// above (at a higher address than) a correct one, so the lowest flag is exact.
#[inline]
fn flags(x: u64, n: u8) -> u64 {
    let below = x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let y = x ^ (ONES * 0x7f);
    let del = y.wrapping_sub(ONES) & !y & HIGH;
    below | del
}

#[inline]
fn word(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]))
}

/// The length of the longest prefix of visible ASCII (0x21..=0x7e), eight bytes at a time.
#[inline]
pub fn visible_prefix(bytes: &[u8]) -> usize {
    let mut done = 0;
    for chunk in bytes.chunks_exact(8) {
        let x = word(chunk);
        let bad = flags(x, 0x21) | (x & HIGH);
        if bad != 0 {
            return done + (bad.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + bytes[done..].iter().position(|&b| !is_target_byte(b)).unwrap_or(bytes.len() - done)
}

/// The length of the longest prefix of `value` made of field-vchar, SP and HTAB (RFC 9110 §5.5), eight bytes
/// at a time.
#[inline]
pub fn valid_value_prefix(value: &[u8]) -> usize {
    let mut done = 0;
    for chunk in value.chunks_exact(8) {
        let bad = flags(word(chunk), 0x20);
        if bad != 0 {
            let at = (bad.trailing_zeros() / 8) as usize;
            // HTAB is the one CTL allowed; past it, finish the word byte by byte.
            if chunk[at] != b'\t' {
                return done + at;
            }
            if let Some(i) = chunk[at..].iter().position(|&c| !VALUE[c as usize]) {
                return done + at + i;
            }
        }
        done += 8;
    }
    done + value[done..].iter().position(|&b| !VALUE[b as usize]).unwrap_or(value.len() - done)
}

/// Text from bytes this parser already checked to be ASCII (tchar, visible ASCII or host-name bytes).
///
/// `str::from_utf8` costs as much as the rest of parsing a short name; the check is kept in debug builds
/// (which the fuzzers and tests use).
#[inline]
pub fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii(), "ascii_str on non-ASCII bytes");
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8; checked just above.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    } else {
        ""
    }
}
