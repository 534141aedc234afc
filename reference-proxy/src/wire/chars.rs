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

/// The length of the longest prefix of visible ASCII (0x21..=0x7e).
#[inline]
pub fn visible_prefix(bytes: &[u8]) -> usize {
    scan::visible_prefix(bytes)
}

/// The length of the longest prefix of `value` made of field-vchar, SP and HTAB (RFC 9110 §5.5).
#[inline]
pub fn valid_value_prefix(value: &[u8]) -> usize {
    scan::value_prefix(value)
}

/// One pass over a field line that starts with a valid name: `Some((colon, stop))` when `line` starts with one
/// or more tchar and then `:`, where `stop` is the first byte after the colon that is not a field-value byte
/// (where a valid line's CR stands). `None` when the line does not start that way.
#[inline]
pub fn field_line_scan(line: &[u8]) -> Option<(usize, usize)> {
    scan::field_line(line)
}

/// Per-byte classes of a short authority, one bit per byte (bit i is byte i).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthorityMasks {
    /// Letters, digits, `-`, `_` and `.`: the bytes of a reg-name this parser accepts.
    pub name: u64,
    pub digit: u64,
    pub dot: u64,
    pub colon: u64,
}

/// The request-target at the start of `bytes`: its length (the longest prefix of visible ASCII) and, when it is
/// at most 64 bytes long, the classes of its bytes, from the same pass.
#[inline]
pub fn target_scan(bytes: &[u8]) -> (usize, Option<AuthorityMasks>) {
    scan::target_scan(bytes)
}

/// The classes of each of the first `n <= 64` bytes of `bytes` (the rest may be read, but is not classified).
#[inline]
pub fn authority_masks(bytes: &[u8], n: usize) -> AuthorityMasks {
    debug_assert!(n <= 64 && n <= bytes.len());
    scan::authority_masks(bytes, n)
}

/// Byte-class scans the same on every platform: reference definitions for the vector versions.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
mod scalar {
    use super::VALUE;

    pub fn visible_prefix(bytes: &[u8]) -> usize {
        bytes.iter().position(|&b| !super::is_target_byte(b)).unwrap_or(bytes.len())
    }

    pub fn value_prefix(value: &[u8]) -> usize {
        value.iter().position(|&b| !VALUE[b as usize]).unwrap_or(value.len())
    }

    pub fn field_line(line: &[u8]) -> Option<(usize, usize)> {
        let name = super::tchar_prefix(line);
        if name == 0 || line.get(name) != Some(&b':') {
            return None;
        }
        Some((name, name + 1 + value_prefix(&line[name + 1..])))
    }

    pub fn target_scan(bytes: &[u8]) -> (usize, Option<super::AuthorityMasks>) {
        let n = visible_prefix(bytes);
        (n, (n <= 64).then(|| authority_masks(bytes, n)))
    }

    pub fn authority_masks(bytes: &[u8], n: usize) -> super::AuthorityMasks {
        let mut m = super::AuthorityMasks::default();
        for (i, &b) in bytes[..n].iter().enumerate() {
            let bit = 1u64 << i;
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                m.name |= bit;
            }
            if b.is_ascii_digit() {
                m.digit |= bit;
            }
            if b == b'.' {
                m.dot |= bit;
            }
            if b == b':' {
                m.colon |= bit;
            }
        }
        m
    }
}

/// SSE2 (part of every x86-64 CPU): 16 bytes per step. A head's lines are mostly shorter than 48 bytes, so
/// wider vectors would not pay for their set-up.
///
/// The intrinsics are `unsafe` to call outside a `#[target_feature]` function even though this module is only
/// compiled when SSE2 is enabled for the whole build; each such call is wrapped and needs nothing else.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod scan {
    use std::arch::x86_64::*;

    /// The 16 bytes at `at` of the input, and how to read lane masks relative to `at`.
    struct Block {
        x: __m128i,
        /// Lanes before `at`, when the block was read from further back, to shift out of a mask.
        shift: u32,
        /// Mask bits that stand for input bytes (all 16 unless the input ends within the block).
        valid: u32,
    }

    #[inline(always)]
    fn loadu(sixteen: &[u8]) -> __m128i {
        assert!(sixteen.len() >= 16);
        // SAFETY: SSE2 is enabled (module cfg); the 16 bytes read are in bounds (asserted just above).
        unsafe { _mm_loadu_si128(sixteen.as_ptr().cast()) }
    }

    /// Reads the block at `at <= bytes.len()` without touching memory past the input: near the end, the last
    /// 16 bytes are read instead and the lanes before `at` shifted out; only a shorter input is copied.
    #[inline(always)]
    fn block(bytes: &[u8], at: usize) -> Block {
        let len = bytes.len();
        if let Some(full) = bytes.get(at..at + 16) {
            return Block { x: loadu(full), shift: 0, valid: 0xffff };
        }
        let valid = (1u32 << (len - at)) - 1;
        if len >= 16 {
            Block { x: loadu(&bytes[len - 16..]), shift: (at + 16 - len) as u32, valid }
        } else {
            let mut pad = [0u8; 16];
            pad[..len - at].copy_from_slice(&bytes[at..]);
            Block { x: loadu(&pad), shift: 0, valid }
        }
    }

    impl Block {
        /// Lanes where `v` is set, as bits relative to `at`, input bytes only.
        #[inline(always)]
        fn bits(&self, v: __m128i) -> u32 {
            // SAFETY: SSE2 is enabled (module cfg); register-only intrinsic.
            ((unsafe { _mm_movemask_epi8(v) } as u32) >> self.shift) & self.valid
        }

        /// As [`Block::bits`], with every lane past the end of the input set, so a scan stops there.
        #[inline(always)]
        fn stop_bits(&self, v: __m128i) -> u32 {
            self.bits(v) | (!self.valid & 0xffff)
        }
    }

    /// Bit i set where byte i is not visible ASCII: below 0x21, DEL, or 0x80 and above (negative as i8).
    #[inline(always)]
    fn not_visible(x: __m128i) -> __m128i {
        // SAFETY: SSE2 is enabled (module cfg); register-only intrinsics.
        unsafe {
            let low_or_high = _mm_cmplt_epi8(x, _mm_set1_epi8(0x21));
            let del = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f));
            _mm_or_si128(low_or_high, del)
        }
    }

    /// Bit i set where byte i is not a field-value byte: a CTL other than HTAB, or DEL.
    #[inline(always)]
    fn not_value(x: __m128i) -> __m128i {
        // SAFETY: SSE2 is enabled (module cfg); register-only intrinsics.
        unsafe {
            let ctl = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
            let tab = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x09));
            let del = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f));
            _mm_or_si128(_mm_andnot_si128(tab, ctl), del)
        }
    }

    /// Movemask of `class` over the full block at `at`.
    #[inline(always)]
    fn full(bytes: &[u8], at: usize, class: fn(__m128i) -> __m128i) -> u32 {
        // SAFETY: SSE2 is enabled (module cfg); register-only intrinsic.
        unsafe { _mm_movemask_epi8(class(loadu(&bytes[at..at + 16]))) as u32 }
    }

    /// The first byte at or after `at` in `class`, or the end of the input.
    #[inline(always)]
    fn first_in(bytes: &[u8], mut at: usize, class: fn(__m128i) -> __m128i) -> usize {
        // Two blocks per step while they last: one test and branch per 32 bytes, as with a 256-bit vector.
        while at + 32 <= bytes.len() {
            let stop = full(bytes, at, class) | full(bytes, at + 16, class) << 16;
            if stop != 0 {
                return at + stop.trailing_zeros() as usize;
            }
            at += 32;
        }
        while at + 16 <= bytes.len() {
            let stop = full(bytes, at, class);
            if stop != 0 {
                return at + stop.trailing_zeros() as usize;
            }
            at += 16;
        }
        let blk = block(bytes, at);
        at + blk.stop_bits(class(blk.x)).trailing_zeros() as usize
    }

    #[inline]
    pub fn visible_prefix(bytes: &[u8]) -> usize {
        first_in(bytes, 0, not_visible)
    }

    #[inline]
    pub fn value_prefix(bytes: &[u8]) -> usize {
        first_in(bytes, 0, not_value)
    }

    /// Bytes that end a field name: every byte but tchar (RFC 9110 §5.6.2), the colon included.
    #[inline(always)]
    fn not_tchar(x: __m128i) -> __m128i {
        // SAFETY: SSE2 is enabled (module cfg); register-only intrinsics.
        unsafe {
            let eq = |c: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8));
            // The delimiters "(),/:;<=>?@[\]{} : three ranges and five single bytes.
            let ranges = _mm_or_si128(_mm_or_si128(in_range(x, b':', 6), in_range(x, b'[', 2)), in_range(x, b'(', 1));
            let singles = _mm_or_si128(_mm_or_si128(eq(b'"'), eq(b',')), _mm_or_si128(eq(b'/'), eq(b'{')));
            _mm_or_si128(_mm_or_si128(ranges, singles), _mm_or_si128(eq(b'}'), not_visible(x)))
        }
    }

    /// The name ends at the first non-tchar, which must be the colon; the value scan goes on from the same block.
    #[inline]
    pub fn field_line(bytes: &[u8]) -> Option<(usize, usize)> {
        let mut at = 0;
        loop {
            let blk = block(bytes, at);
            let end = blk.stop_bits(not_tchar(blk.x));
            if end != 0 {
                let name_end = at + end.trailing_zeros() as usize;
                if name_end == 0 || bytes.get(name_end) != Some(&b':') {
                    return None;
                }
                // Bytes up to the colon are tchar and the colon is a value byte, so the first stop in this
                // block lies after the colon.
                let stop = blk.stop_bits(not_value(blk.x));
                if stop != 0 {
                    return Some((name_end, at + stop.trailing_zeros() as usize));
                }
                return Some((name_end, first_in(bytes, at + 16, not_value)));
            }
            at += 16;
        }
    }

    /// Bit i set where byte i of the block is in `lo..=lo + span`.
    #[inline(always)]
    fn in_range(x: __m128i, lo: u8, span: u8) -> __m128i {
        // SAFETY: SSE2 is enabled (module cfg); register-only intrinsics.
        unsafe {
            let t = _mm_sub_epi8(x, _mm_set1_epi8(lo as i8));
            _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(span as i8)), t)
        }
    }

    /// Adds the classes of the block's bytes to `m`, at bit offset `at`.
    #[inline(always)]
    fn add_classes(m: &mut super::AuthorityMasks, blk: &Block, at: usize) {
        let x = blk.x;
        // SAFETY: SSE2 is enabled (module cfg); register-only intrinsics.
        let (name, digit, dot, colon) = unsafe {
            let eq = |c: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8));
            let digit = in_range(x, b'0', 9);
            let alpha = in_range(_mm_or_si128(x, _mm_set1_epi8(0x20)), b'a', 25);
            let dot = eq(b'.');
            let other = _mm_or_si128(_mm_or_si128(eq(b'-'), eq(b'_')), dot);
            (_mm_or_si128(_mm_or_si128(alpha, digit), other), digit, dot, eq(b':'))
        };
        let bits = |v| u64::from(blk.bits(v)) << at;
        m.name |= bits(name);
        m.digit |= bits(digit);
        m.dot |= bits(dot);
        m.colon |= bits(colon);
    }

    fn keep_first(m: super::AuthorityMasks, n: usize) -> super::AuthorityMasks {
        let keep = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        super::AuthorityMasks { name: m.name & keep, digit: m.digit & keep, dot: m.dot & keep, colon: m.colon & keep }
    }

    #[inline]
    pub fn authority_masks(bytes: &[u8], n: usize) -> super::AuthorityMasks {
        let mut m = super::AuthorityMasks::default();
        let mut at = 0;
        while at < n {
            add_classes(&mut m, &block(bytes, at), at);
            at += 16;
        }
        keep_first(m, n)
    }

    #[inline]
    pub fn target_scan(bytes: &[u8]) -> (usize, Option<super::AuthorityMasks>) {
        let mut m = super::AuthorityMasks::default();
        let mut at = 0;
        while at < 64 {
            let blk = block(bytes, at);
            add_classes(&mut m, &blk, at);
            let stop = blk.stop_bits(not_visible(blk.x));
            if stop != 0 {
                let n = at + stop.trailing_zeros() as usize;
                return (n, (n <= 64).then(|| keep_first(m, n)));
            }
            at += 16;
        }
        // A target of exactly 64 bytes still has all its classes.
        let n = first_in(bytes, 64, not_visible);
        (n, (n == 64).then(|| keep_first(m, 64)))
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
use scalar as scan;

/// Text from bytes this parser already checked to be ASCII (tchar, visible ASCII or host-name bytes).
///
/// `str::from_utf8` costs as much as the rest of parsing a short name, and even `is_ascii` is branchy on the
/// short strings seen here, so short ones are checked with two overlapping words.
#[inline]
pub fn ascii_str(bytes: &[u8]) -> &str {
    if all_ascii(bytes) {
        // SAFETY: ASCII is valid UTF-8; checked just above.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    } else {
        debug_assert!(false, "ascii_str on non-ASCII bytes");
        ""
    }
}

#[inline]
fn all_ascii(b: &[u8]) -> bool {
    let n = b.len();
    // Out-of-range reads cannot happen (the lengths are matched below); they would read as non-ASCII.
    let w4 = |i: usize| u32::from_le_bytes(b.get(i..i + 4).and_then(|w| w.try_into().ok()).unwrap_or([0x80; 4]));
    let w8 = |i: usize| u64::from_le_bytes(b.get(i..i + 8).and_then(|w| w.try_into().ok()).unwrap_or([0x80; 8]));
    match n {
        0..4 => b.iter().fold(0, |acc, &c| acc | c) < 0x80,
        4..8 => (w4(0) | w4(n - 4)) & 0x8080_8080 == 0,
        8..=16 => (w8(0) | w8(n - 8)) & 0x8080_8080_8080_8080 == 0,
        17..=32 => (w8(0) | w8(8) | w8(n - 16) | w8(n - 8)) & 0x8080_8080_8080_8080 == 0,
        _ => b.is_ascii(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// Bytes that sit near every class boundary, so short random strings hit all the cases.
    fn byte() -> impl Strategy<Value = u8> {
        let edges: &[u8] = b"aZ09.-_@`{/: \t\r\n\x00\x1f\x21\x7e\x7f\x80\xff\"(),;<=>?[\\]}^|~!#'+";
        prop_oneof![prop::sample::select(edges), any::<u8>()]
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        // Mostly valid runs with a few other bytes, up to a few blocks long.
        prop_oneof![
            prop::collection::vec(prop_oneof![8 => Just(b'x'), 1 => byte()], 0..70),
            // Around the 64-byte edge of the authority classes.
            (62usize..67, byte()).prop_map(|(n, end)| [vec![b'x'; n], vec![end]].concat()),
        ]
    }

    proptest! {
        #[test]
        fn vector_scans_match_the_definitions(bytes in input()) {
            prop_assert_eq!(super::visible_prefix(&bytes), super::scalar::visible_prefix(&bytes));
            prop_assert_eq!(super::valid_value_prefix(&bytes), super::scalar::value_prefix(&bytes));
            prop_assert_eq!(super::field_line_scan(&bytes), super::scalar::field_line(&bytes));
            prop_assert_eq!(super::all_ascii(&bytes), bytes.is_ascii());
            prop_assert_eq!(super::target_scan(&bytes), super::scalar::target_scan(&bytes));
            let n = bytes.len().min(64);
            prop_assert_eq!(super::authority_masks(&bytes, n), super::scalar::authority_masks(&bytes, n));
            for cut in 0..n {
                prop_assert_eq!(super::authority_masks(&bytes, cut), super::scalar::authority_masks(&bytes, cut));
            }
        }
    }
}
