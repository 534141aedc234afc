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

/// RFC 9110 §5.6.2 tchar.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Visible ASCII: the only bytes this parser accepts in a request-target.
#[inline]
pub fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// The first byte of a field value that is not field-vchar, SP or HTAB.
#[inline]
pub fn invalid_value_byte(value: &[u8]) -> Option<u8> {
    value.iter().copied().find(|&b| !VALUE[b as usize])
}
