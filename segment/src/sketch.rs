//! HLL sketches for the `HllSketch { lg_k }` metric: a thin wrapper over Apache DataSketches HLL
//! (the `datasketches` crate), the same sketch family Druid's `HLLSketchBuild` aggregator uses.
//!
//! Main type: [`HllSketch`]. It starts as a plain DataSketches sketch (`Hll8` registers, the fastest
//! to update) and turns into a DataSketches union the first time another sketch is merged into it;
//! from then on updates and merges go to the union's internal sketch. Neither `update_*` nor
//! `merge` allocates per call in the steady state (containers grow geometrically, as the crate's
//! own do). A merge allocates once when a plain sketch first becomes a union, and when the
//! *other* side is itself a union (the crate only merges `&HllSketch`, so a union is copied out
//! first); merging persisted sketches read with [`HllSketch::from_bytes`] never copies.
//!
//! Hashing follows DataSketches Java (so sketches stay interchangeable with Druid's):
//! strings hash their UTF-16LE code units ([`HllSketch::update_str_utf16le`], Druid's default
//! `stringEncoding: "utf16le"`, Java's `update(char[])`) or their UTF-8 bytes
//! ([`HllSketch::update_str`], `stringEncoding: "utf8"`), and the empty string is ignored; longs hash their 8 little-endian bytes; doubles hash the bits of the canonical double
//! (`-0.0` as `0.0`, one NaN), as Java's `update(double)` does.
//!
//! Invariants: `lg_k` is in `4..=21`; a merge leaves `lg_k` at the minimum of the two sides (a
//! union is rebuilt at the smaller `lg_k` when needed); [`HllSketch::to_bytes`] writes the
//! DataSketches binary format, and [`HllSketch::from_bytes`] rejects any malformed image with an
//! error instead of panicking.

use datasketches::hash::value::raw_bytes;
pub use datasketches::hll::Coupon;
pub use datasketches::hll::HllType;
use datasketches::hll::{self, HllUnion};

use crate::error::{Result, SegmentError};

/// The smallest and largest `lg_k` DataSketches HLL supports.
pub const LG_K_MIN: u8 = 4;
pub const LG_K_MAX: u8 = 21;

/// Register width used in memory and on disk: 8 bits per register updates fastest. On the
/// uncompressed hot format a sketch in full HLL mode costs twice `Hll4`'s bytes; zstd segments
/// (`Compression::Zstd`) recover most of that. Sketches of few values stay in the compact
/// list/set modes either way.
const HLL_TYPE: HllType = HllType::Hll8;

/// An HLL distinct-count sketch (see the module doc).
#[derive(Clone, Debug)]
pub struct HllSketch {
    state: State,
}

#[derive(Clone, Debug)]
enum State {
    /// Updated directly; no merge has happened yet.
    Single(hll::HllSketch),
    /// At least one merge happened; `lg_max_k` of the union is this sketch's `lg_k`.
    Union(HllUnion),
}

impl HllSketch {
    /// An empty sketch with `2^lg_k` registers; `lg_k` is clamped to `4..=21` (the schema
    /// refuses other values before ingestion starts).
    pub fn new(lg_k: u8) -> HllSketch {
        HllSketch {
            state: State::Single(empty_sketch(lg_k)),
        }
    }

    /// Adds a string value (its UTF-8 bytes). The empty string is ignored, as DataSketches does.
    #[inline]
    pub fn update_str(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        self.update_hashable(raw_bytes::from_str(value));
    }

    /// Adds a string value by its UTF-16LE code units (Druid's default `stringEncoding`, Java's
    /// `update(char[])`). The empty string is ignored.
    #[inline]
    pub fn update_str_utf16le(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(value.len() * 2);
        for unit in value.encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        self.update_hashable(raw_bytes::from_slice(&bytes));
    }

    /// Adds a string in `encoding`: UTF-16LE code units or UTF-8 bytes.
    #[inline]
    pub fn update_str_as(&mut self, value: &str, utf16le: bool) {
        if utf16le {
            self.update_str_utf16le(value);
        } else {
            self.update_str(value);
        }
    }

    /// Adds a long value (its 8 little-endian bytes, as Java's `update(long)`).
    #[inline]
    pub fn update_i64(&mut self, value: i64) {
        self.update_hashable(raw_bytes::from_slice(&value.to_le_bytes()));
    }

    /// Adds a double value (the bits of its canonical form, as Java's `update(double)`).
    #[inline]
    pub fn update_f64(&mut self, value: f64) {
        let bits = if value.is_nan() {
            0x7ff8_0000_0000_0000u64
        } else {
            // Adding +0.0 turns -0.0 into +0.0 and leaves every other value unchanged.
            (value + 0.0).to_bits()
        };
        self.update_hashable(raw_bytes::from_slice(&bits.to_le_bytes()));
    }

    /// The coupon (hash) [`HllSketch::update_str`] adds for `value`; `None` for the empty
    /// string, which sketches ignore. Computed once per dictionary value by
    /// [`crate::format::StringColumn::value_coupons`], so distinct counts never rehash a string.
    #[inline]
    pub fn str_coupon(value: &str) -> Option<Coupon> {
        (!value.is_empty()).then(|| Coupon::from_value(raw_bytes::from_str(value)))
    }

    /// Adds a value by its coupon (see [`HllSketch::str_coupon`]): the same as updating with
    /// the value itself.
    #[inline]
    pub fn update_coupon(&mut self, coupon: Coupon) {
        match &mut self.state {
            State::Single(sketch) => sketch.update_with_coupon(coupon),
            State::Union(union) => {
                // The crate's union takes values or sketches, not coupons.
                let mut one = empty_sketch(union.lg_config_k());
                one.update_with_coupon(coupon);
                union.update(&one);
            }
        }
    }

    #[inline]
    fn update_hashable<H: std::hash::Hash>(&mut self, value: H) {
        match &mut self.state {
            State::Single(sketch) => sketch.update(value),
            State::Union(union) => union.update_value(value),
        }
    }

    /// Merges `other` into this sketch (a set union of the values both have seen). The result's
    /// `lg_k` is the smaller of the two.
    pub fn merge(&mut self, other: &HllSketch) {
        let target_lg_k = self.lg_k().min(other.lg_k());
        let copied;
        let other_sketch = match &other.state {
            State::Single(sketch) => sketch,
            State::Union(union) => {
                if union.is_empty() {
                    self.shrink_to(target_lg_k);
                    return;
                }
                copied = union.to_sketch(HLL_TYPE);
                &copied
            }
        };
        match &mut self.state {
            State::Single(sketch) => {
                let mut union = new_union(target_lg_k);
                union.update(sketch);
                union.update(other_sketch);
                self.state = State::Union(union);
            }
            State::Union(union) => {
                if target_lg_k < union.lg_max_k() {
                    let mut smaller = new_union(target_lg_k);
                    smaller.update(&union.to_sketch(HLL_TYPE));
                    *union = smaller;
                }
                union.update(other_sketch);
            }
        }
    }

    /// Lowers `lg_k` to `lg_k` if it is higher (used when merging an empty sketch).
    fn shrink_to(&mut self, lg_k: u8) {
        if lg_k >= self.lg_k() {
            return;
        }
        let mut union = new_union(lg_k);
        match &self.state {
            State::Single(sketch) => union.update(sketch),
            State::Union(old) => union.update(&old.to_sketch(HLL_TYPE)),
        }
        self.state = State::Union(union);
    }

    /// The estimated number of distinct values.
    pub fn estimate(&self) -> f64 {
        match &self.state {
            State::Single(sketch) => sketch.estimate(),
            State::Union(union) => union.estimate(),
        }
    }

    /// Whether no value has been added.
    pub fn is_empty(&self) -> bool {
        match &self.state {
            State::Single(sketch) => sketch.is_empty(),
            State::Union(union) => union.is_empty(),
        }
    }

    /// The configured `lg_k` (`2^lg_k` registers).
    pub fn lg_k(&self) -> u8 {
        match &self.state {
            State::Single(sketch) => sketch.lg_config_k(),
            State::Union(union) => union.lg_max_k(),
        }
    }

    /// The DataSketches HLL binary image (compact: list and set modes store only their coupons).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.state {
            State::Single(sketch) => sketch.serialize(),
            State::Union(union) => union.to_sketch(HLL_TYPE).serialize(),
        }
    }

    /// The DataSketches HLL image with registers of `target` width (Druid's `tgtHllType`:
    /// HLL_4, HLL_6 or HLL_8); list and set modes are the same in every width.
    pub fn to_bytes_as(&self, target: HllType) -> Vec<u8> {
        match &self.state {
            State::Single(sketch) if target == HLL_TYPE => sketch.serialize(),
            State::Single(sketch) => {
                let mut union = new_union(sketch.lg_config_k());
                union.update(sketch);
                union.to_sketch(target).serialize()
            }
            State::Union(union) => union.to_sketch(target).serialize(),
        }
    }

    /// Reads a DataSketches HLL image (any register width, as Druid may write `HLL_4`).
    pub fn from_bytes(bytes: &[u8]) -> Result<HllSketch> {
        Self::from_bytes_in(bytes, "unknown", "unknown")
    }

    /// As [`HllSketch::from_bytes`], naming the segment and column in the error.
    ///
    /// The crate checks the image's structure but trusts its contents, and some inconsistent
    /// contents (register values above 63, a wrong zero count) make later updates overflow, so
    /// they are checked here too; `HLL_4` and `HLL_6` images are rebuilt as `HLL_8` registers,
    /// which also recomputes their counters.
    pub fn from_bytes_in(bytes: &[u8], segment: &str, column: &str) -> Result<HllSketch> {
        let corrupt = |message: String| SegmentError::Corrupt {
            segment: segment.to_owned(),
            column: column.to_owned(),
            message: format!("hll sketch of {} bytes: {message}", bytes.len()),
        };
        let sketch = hll::HllSketch::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        let state = match check_image(bytes).map_err(corrupt)? {
            Rebuild::No => State::Single(sketch),
            Rebuild::Yes => {
                let mut union = new_union(sketch.lg_config_k());
                union.update(&sketch);
                State::Union(union)
            }
        };
        Ok(HllSketch { state })
    }
}

enum Rebuild {
    No,
    Yes,
}

/// Checks what `hll::HllSketch::deserialize` leaves unchecked in an image it accepted (so the
/// header and the lengths read here are known to be present).
fn check_image(bytes: &[u8]) -> std::result::Result<Rebuild, String> {
    const LIST: u8 = 0;
    const SET: u8 = 1;
    const TGT_HLL4: u8 = 0;
    const TGT_HLL8: u8 = 2;
    const COMPACT_FLAG: u8 = 8;
    const HLL_PREAMBLE_BYTES: usize = 40;
    /// Registers hold at most 63 (six bits); HLL_4 stores `cur_min + 0..=14` in its nibbles.
    const REGISTER_MAX: u8 = 63;
    let header = |at: usize| bytes.get(at).copied().unwrap_or(0);
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let (lg_k, lg_arr, flags, state, mode) =
        (header(3), header(4), header(5), header(6), header(7));
    let compact = flags & COMPACT_FLAG != 0;
    let coupons_unique = |offset: usize, count: usize| {
        let mut coupons: Vec<u32> = (0..count)
            .map(|i| u32_at(offset + 4 * i))
            .filter(|&c| c != 0)
            .collect();
        let present = coupons.len();
        coupons.sort_unstable();
        coupons.dedup();
        coupons.len() == present
    };
    match mode & 3 {
        LIST => {
            let count = usize::from(state);
            let slots = if compact { count } else { 1 << lg_arr };
            let nonzero = (0..slots).filter(|&i| u32_at(8 + 4 * i) != 0).count();
            if nonzero != count || !coupons_unique(8, slots) {
                return Err(format!(
                    "list of {count} coupons holds {nonzero} distinct ones"
                ));
            }
            Ok(Rebuild::No)
        }
        SET => {
            let slots = if compact {
                u32_at(8) as usize
            } else {
                1 << lg_arr
            };
            if !coupons_unique(12, slots) {
                return Err("set holds duplicate coupons".into());
            }
            Ok(Rebuild::No)
        }
        _ => {
            let estimator_ok = (0..3).all(|i| {
                let at = 8 + 8 * i;
                let value = bytes
                    .get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(f64::NAN, f64::from_le_bytes);
                value.is_finite() && value >= 0.0
            });
            if !estimator_ok {
                return Err("estimator state is not finite".into());
            }
            match (mode >> 2) & 3 {
                TGT_HLL8 => {
                    let k = 1usize << lg_k;
                    let registers = bytes
                        .get(HLL_PREAMBLE_BYTES..HLL_PREAMBLE_BYTES + k)
                        .ok_or("registers are truncated")?;
                    if registers.iter().any(|&r| r > REGISTER_MAX) {
                        return Err(format!("register value above {REGISTER_MAX}"));
                    }
                    let zeros = registers.iter().filter(|&&r| r == 0).count();
                    if zeros != u32_at(32) as usize {
                        return Err(format!(
                            "{zeros} empty registers, header says {}",
                            u32_at(32)
                        ));
                    }
                    Ok(Rebuild::No)
                }
                TGT_HLL4 if state > REGISTER_MAX - 14 => Err(format!(
                    "minimum register value {state} is above {}",
                    REGISTER_MAX - 14
                )),
                _ => Ok(Rebuild::Yes),
            }
        }
    }
}

fn clamp_lg_k(lg_k: u8) -> u8 {
    lg_k.clamp(LG_K_MIN, LG_K_MAX)
}

fn empty_sketch(lg_k: u8) -> hll::HllSketch {
    hll::HllSketch::new(clamp_lg_k(lg_k), HLL_TYPE)
        .expect("datasketches accepts every lg_k in 4..=21 and lg_k is clamped to that range")
}

fn new_union(lg_k: u8) -> HllUnion {
    HllUnion::new(clamp_lg_k(lg_k))
        .expect("datasketches accepts every lg_k in 4..=21 and lg_k is clamped to that range")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn coupons_add_exactly_what_strings_add() {
        let values: Vec<String> = (0..5000).map(|i| format!("value-{i}")).collect();
        let (mut by_string, mut by_coupon) = (HllSketch::new(12), HllSketch::new(12));
        for v in values.iter().map(String::as_str).chain(["", "value-7"]) {
            by_string.update_str(v);
            if let Some(c) = HllSketch::str_coupon(v) {
                by_coupon.update_coupon(c);
            }
        }
        assert_eq!(by_string.to_bytes(), by_coupon.to_bytes());
        assert!(HllSketch::str_coupon("").is_none());
        // After a merge the sketch is a union; a coupon still lands like its string.
        let (mut a, mut b) = (by_string.clone(), by_coupon.clone());
        a.merge(&HllSketch::new(12));
        b.merge(&HllSketch::new(12));
        a.update_str("late");
        b.update_coupon(HllSketch::str_coupon("late").unwrap());
        assert_eq!(a.estimate(), b.estimate());
    }

    /// Three relative standard errors of an HLL sketch with `2^lg_k` registers, plus a little
    /// slack for tiny counts.
    fn tolerance(lg_k: u8, n: f64) -> f64 {
        let rse = 1.04 / f64::from(1u32 << lg_k).sqrt();
        3.0 * rse * n + 1.0
    }

    fn sketch_of(lg_k: u8, values: std::ops::Range<i64>) -> HllSketch {
        let mut s = HllSketch::new(lg_k);
        for v in values {
            s.update_i64(v);
        }
        s
    }

    #[test]
    fn estimates_within_error_bound() {
        for n in [1i64, 2, 10, 100, 1_000, 10_000, 100_000, 1_000_000] {
            let s = sketch_of(12, 0..n);
            let est = s.estimate();
            assert!(
                (est - n as f64).abs() <= tolerance(12, n as f64),
                "n {n}: estimate {est}"
            );
        }
        let mut s = HllSketch::new(11);
        for i in 0..50_000 {
            s.update_str(&format!("user-{i}"));
            s.update_str(&format!("user-{i}")); // duplicates do not count
        }
        assert!((s.estimate() - 50_000.0).abs() <= tolerance(11, 50_000.0));
    }

    #[test]
    fn small_counts_are_exact_and_types_hash_apart() {
        let mut s = HllSketch::new(12);
        assert!(s.is_empty());
        assert_eq!(s.estimate(), 0.0);
        s.update_str("");
        assert!(s.is_empty(), "empty strings are ignored as in DataSketches");
        s.update_str("a");
        s.update_str("b");
        s.update_str("a");
        s.update_i64(1);
        s.update_f64(1.0);
        s.update_f64(0.0);
        s.update_f64(-0.0); // same as 0.0
        s.update_f64(f64::NAN);
        s.update_f64(-f64::NAN); // one canonical NaN
        assert!((s.estimate() - 6.0).abs() < 0.01, "{}", s.estimate());
    }

    #[test]
    fn merge_of_halves_matches_whole() {
        for n in [100i64, 5_000, 200_000] {
            let whole = sketch_of(12, 0..n);
            let mut left = sketch_of(12, 0..n / 2);
            let right = sketch_of(12, n / 2..n);
            left.merge(&right);
            assert_eq!(left.lg_k(), 12);
            let (a, b) = (left.estimate(), whole.estimate());
            assert!(
                (a - n as f64).abs() <= tolerance(12, n as f64),
                "n {n}: {a}"
            );
            assert!(
                (a - b).abs() <= 0.02 * n as f64 + 1.0,
                "n {n}: merged {a} whole {b}"
            );
        }
        // Overlapping halves: a union, not a sum.
        let mut a = sketch_of(12, 0..60_000);
        a.merge(&sketch_of(12, 40_000..100_000));
        assert!((a.estimate() - 100_000.0).abs() <= tolerance(12, 100_000.0));
        // Updates after a merge, and merging a merged sketch, keep working.
        a.update_i64(-1);
        let mut c = sketch_of(12, 100_000..150_000);
        c.merge(&a);
        assert!((c.estimate() - 150_001.0).abs() <= tolerance(12, 150_001.0));
    }

    #[test]
    fn merge_takes_smaller_lg_k() {
        let mut big = sketch_of(14, 0..50_000);
        big.merge(&sketch_of(10, 50_000..100_000));
        assert_eq!(big.lg_k(), 10);
        assert!((big.estimate() - 100_000.0).abs() <= tolerance(10, 100_000.0));
        let mut small = sketch_of(10, 0..50_000);
        small.merge(&sketch_of(14, 50_000..100_000));
        assert_eq!(small.lg_k(), 10);
        // A union already built at 12 shrinks when a 9 arrives.
        let mut u = sketch_of(12, 0..10);
        u.merge(&sketch_of(12, 10..20));
        u.merge(&HllSketch::new(9));
        assert_eq!(u.lg_k(), 9);
        assert!((u.estimate() - 20.0).abs() < 0.5);
        let mut e = HllSketch::new(12);
        e.merge(&HllSketch::new(12));
        assert!(e.is_empty());
    }

    #[test]
    fn serialization_round_trips() {
        let mut merged = sketch_of(12, 0..30_000);
        merged.merge(&sketch_of(12, 20_000..70_000));
        for s in [
            HllSketch::new(12),
            sketch_of(12, 0..5),         // list mode
            sketch_of(12, 0..300),       // set mode
            sketch_of(12, 0..1_000_000), // register array
            sketch_of(4, 0..1_000),      // smallest lg_k
            merged,                      // union state
        ] {
            let bytes = s.to_bytes();
            let back = HllSketch::from_bytes(&bytes).expect("valid image");
            assert_eq!(back.estimate(), s.estimate());
            assert_eq!(back.lg_k(), s.lg_k());
            // Set mode may reorder its hash table; the content stays the same.
            let again = HllSketch::from_bytes(&back.to_bytes()).expect("valid image");
            assert_eq!(again.estimate(), s.estimate());
        }
    }

    #[test]
    fn garbage_bytes_are_errors() {
        assert!(HllSketch::from_bytes(&[]).is_err());
        assert!(HllSketch::from_bytes(b"not a sketch at all").is_err());
        let bytes = sketch_of(12, 0..100_000).to_bytes();
        let err = HllSketch::from_bytes_in(&bytes[..bytes.len() / 2], "wiki_x", "users")
            .expect_err("truncated image");
        let text = err.to_string();
        assert!(
            text.starts_with("segment wiki_x: column users: hll sketch"),
            "{text}"
        );
        let mut wrong_family = bytes.clone();
        wrong_family[2] = 3;
        assert!(HllSketch::from_bytes(&wrong_family).is_err());
    }

    #[test]
    fn lg_k_is_clamped() {
        assert_eq!(HllSketch::new(0).lg_k(), LG_K_MIN);
        assert_eq!(HllSketch::new(40).lg_k(), LG_K_MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Arbitrary bytes never panic the reader; mutated valid images neither.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = HllSketch::from_bytes(&bytes);
        }

        #[test]
        fn mutated_images_never_panic(
            kind in 0usize..6,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            more in 0i64..3_000,
        ) {
            let mut bytes = image(kind);
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let len = bytes.len() - cut.index(bytes.len() + 1).min(bytes.len()) / 8;
            if let Ok(mut s) = HllSketch::from_bytes(&bytes[..len]) {
                let _ = s.estimate();
                let mut t = sketch_of(7, 0..50);
                t.merge(&s);
                let mut u = s.clone();
                u.merge(&t);
                for v in 0..more {
                    s.update_i64(v);
                }
                for sketch in [s, t, u] {
                    let again = HllSketch::from_bytes(&sketch.to_bytes());
                    prop_assert!(again.is_ok(), "{:?}", again.err());
                }
            }
        }
    }

    /// Valid images of every mode and register width.
    fn image(kind: usize) -> Vec<u8> {
        let array = |hll_type| {
            let mut s = hll::HllSketch::new(8, hll_type).expect("lg_k 8");
            for v in 0..5_000i64 {
                s.update(v);
            }
            s.serialize()
        };
        match kind {
            0 => sketch_of(8, 0..5).to_bytes(),
            1 => sketch_of(12, 0..200).to_bytes(),
            2 => sketch_of(8, 0..5_000).to_bytes(),
            3 => array(HllType::Hll4),
            4 => array(HllType::Hll6),
            _ => HllSketch::new(8).to_bytes(),
        }
    }
}
