//! Deterministic ids, times and pseudo-random numbers, with no dependency.

/// Formats 128 bits as a version-4-looking UUID.
pub(crate) struct Uuid(pub(crate) u128);

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

/// Unix time as RFC 3339 UTC the way Go's `time.RFC3339Nano` prints it (`2026-01-01T00:00:00Z`,
/// a fraction only when there are nanoseconds, trailing zeros cut), without a date library. The
/// property tests of the decoders use it as their independent reference for the times they expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339 {
    /// Unix seconds, any `i64` whose year fits in four digits.
    pub seconds: i64,
    /// Nanoseconds past `seconds`, below 10^9.
    pub nanos: u32,
}

impl Rfc3339 {
    /// Whole Unix seconds.
    pub fn seconds(seconds: i64) -> Rfc3339 {
        Rfc3339 { seconds, nanos: 0 }
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = self.seconds.div_euclid(86_400);
        let seconds = self.seconds.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            seconds / 3_600,
            seconds % 3_600 / 60,
            seconds % 60
        )?;
        if self.nanos != 0 {
            let mut digits = 9;
            let mut fraction = self.nanos;
            while fraction.is_multiple_of(10) {
                fraction /= 10;
                digits -= 1;
            }
            write!(f, ".{fraction:0digits$}")?;
        }
        f.write_str("Z")
    }
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit permutation.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A pseudo-random value decided by (seed, node, purpose, tick).
pub(crate) fn hash(seed: u64, node: u64, salt: u64, tick: u64) -> u64 {
    mix(mix(mix(seed ^ mix(node)) ^ salt) ^ tick)
}

/// 128 pseudo-random bits decided by (seed, node, purpose, tick).
pub(crate) fn hash128(seed: u64, node: u64, salt: u64, tick: u64) -> u128 {
    let high = hash(seed, node, salt, tick);
    let low = mix(high ^ 0x5851_f42d_4c95_7f2d);
    (u128::from(high) << 64) | u128::from(low)
}
