//! A span's identity and its W3C `traceparent` form.

use rand::Rng;

/// Which trace a span belongs to, its own id, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
    /// Read from another process (a `traceparent`), not made here.
    pub remote: bool,
}

impl SpanContext {
    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The `traceparent` header value: `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..19].copy_from_slice(&hex_u64((self.trace_id >> 64) as u64));
        out[19..35].copy_from_slice(&hex_u64(self.trace_id as u64));
        out[35] = b'-';
        out[36..52].copy_from_slice(&hex_u64(self.span_id));
        out[52] = b'-';
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        out
    }

    /// Parses a `traceparent` (W3C Trace Context level 1); `None` when it is
    /// malformed or names the invalid all-zero ids.
    pub fn from_traceparent(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        let is_hex = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !is_hex(version, 2) || version == "ff" || !is_hex(trace_id, 32) || !is_hex(span_id, 16) {
            return None;
        }
        // Version 00 has exactly four parts; later versions may add more.
        if !is_hex(flags, 2) || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let span_id = u64::from_str_radix(span_id, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            remote: true,
        })
    }
}

/// `value` as 16 lowercase hex digits, worked out for all digits at once
/// (every request's upstream call writes a `traceparent`).
fn hex_u64(value: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex_u32((value >> 32) as u32));
    out[8..].copy_from_slice(&hex_u32(value as u32));
    out
}

fn hex_u32(value: u32) -> [u8; 8] {
    // Each nibble into a byte of its own, the most significant first.
    let mut x = u64::from(value);
    x = (x | x << 16) & 0x0000_FFFF_0000_FFFF;
    x = (x | x << 8) & 0x00FF_00FF_00FF_00FF;
    x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F;
    // 1 in each byte whose nibble is 10 or more: adding 6 carries into bit 4.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    // '0' + nibble, and 'a' - '0' - 10 = 39 more for a letter.
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

/// A new random trace id (never the invalid zero).
pub fn new_trace_id() -> u128 {
    nonzero_random()
}

/// A new random span id (never the invalid zero).
pub fn new_span_id() -> u64 {
    nonzero_random()
}

fn nonzero_random<T>() -> T
where
    rand::distributions::Standard: rand::distributions::Distribution<T>,
    T: Default + PartialEq,
{
    let mut rng = rand::thread_rng();
    loop {
        let id: T = rng.r#gen();
        if id != T::default() {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = SpanContext::from_traceparent(text).expect("valid");
        assert_eq!(context.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(context.span_id, 0x00f067aa0ba902b7);
        assert!(context.sampled && context.remote);
        assert_eq!(&context.traceparent()[..], text.as_bytes());
        let unsampled = SpanContext {
            sampled: false,
            ..context
        };
        assert!(unsampled.traceparent().ends_with(b"-00"));
    }

    #[test]
    fn hex_digits_match_the_formatter() {
        let mut value = 0x9e37_79b9_7f4a_7c15_u64;
        for fixed in [0, 1, 9, 10, 15, 16, 0x00f0_67aa_0ba9_02b7, u64::MAX] {
            assert_eq!(hex_u64(fixed), format!("{fixed:016x}").as_bytes());
        }
        for _ in 0..10_000 {
            // xorshift: many values, every nibble in every position
            value ^= value << 13;
            value ^= value >> 7;
            value ^= value << 17;
            assert_eq!(hex_u64(value), format!("{value:016x}").as_bytes());
        }
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for text in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::from_traceparent(text), None, "{text:?}");
        }
        // A later version may carry more parts.
        assert!(
            SpanContext::from_traceparent(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"
            )
            .is_some()
        );
    }
}
