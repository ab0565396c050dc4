//! Bit packing of unsigned integers in blocks of [`BLOCK_VALUES`] values, laid out for fast
//! decoding.
//!
//! A block of width `W` (0..=64 bits per value) is made of little-endian words: `u32` words in
//! 32 lanes when `W <= 32` ("narrow"), `u64` words in 16 lanes when `W > 32` ("wide"). Value `i`
//! of the block lives in lane `i % lanes` at position `i / lanes`; each lane packs its values back
//! to back, low bits first, and word `k` of lane `l` is stored at index `k * lanes + l`. A value
//! therefore shares its shift amounts with the values of the other lanes at its position, so
//! unpacking is the same shift-and-mask on adjacent words: the compiler turns it into SIMD code
//! (8 narrow values per AVX2 instruction). A full block takes `128 * W` bytes in both layouts; a
//! short last block stores only the words its values reach ([`block_bytes`]).
//!
//! The unpackers are specialized per width with const generics (dispatched once per block) and
//! compiled twice: for the baseline target and, on x86-64, for AVX2, picked at run time.
//! [`with_simd`] runs a whole decoding loop with the best instruction set, so the code that
//! consumes unpacked values is vectorized as widely as the unpacking. Widths are validated by
//! [`Width::new`], so dispatch is total.

/// Values per block.
pub const BLOCK_VALUES: usize = 1024;
/// Lanes of a narrow (`u32` word) block.
const NARROW_LANES: usize = 32;
/// Lanes of a wide (`u64` word) block.
const WIDE_LANES: usize = 16;

/// A bit width in `0..=64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Width(u8);

impl Width {
    pub const ZERO: Width = Width(0);

    pub fn new(bits: u8) -> Option<Width> {
        (bits <= 64).then_some(Width(bits))
    }

    /// The smallest width that holds `max_value`.
    pub fn for_max(max_value: u64) -> Width {
        Width((64 - max_value.leading_zeros()) as u8)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether values pack into `u32` words (and unpack to `u32`).
    pub fn is_narrow(self) -> bool {
        self.0 <= 32
    }

    fn mask(self) -> u64 {
        if self.0 == 64 {
            u64::MAX
        } else {
            (1u64 << self.0) - 1
        }
    }
}

/// Bytes a block of `values` values (at most [`BLOCK_VALUES`]) takes at `width`: whole words
/// per lane, as many as the lane's values reach.
pub fn block_bytes(width: Width, values: usize) -> usize {
    let w = width.0 as usize;
    if width.is_narrow() {
        NARROW_LANES * (values.div_ceil(NARROW_LANES) * w).div_ceil(32) * 4
    } else {
        WIDE_LANES * (values.div_ceil(WIDE_LANES) * w).div_ceil(64) * 8
    }
}

/// Bytes `num_values` values take at `width`, cut into blocks of [`BLOCK_VALUES`]; `None` when
/// that does not fit in memory (a count read from a corrupt file).
pub fn packed_bytes(num_values: usize, width: Width) -> Option<usize> {
    (num_values / BLOCK_VALUES)
        .checked_mul(block_bytes(width, BLOCK_VALUES))?
        .checked_add(block_bytes(width, num_values % BLOCK_VALUES))
}

/// Appends one block holding `values` (at most [`BLOCK_VALUES`], each below `2^width`).
pub fn pack_block(values: &[u64], width: Width, out: &mut Vec<u8>) {
    debug_assert!(values.len() <= BLOCK_VALUES);
    let w = width.0 as usize;
    let words = block_bytes(width, values.len());
    if width.is_narrow() {
        let mut packed = [0u32; BLOCK_VALUES];
        for (i, &value) in values.iter().enumerate() {
            debug_assert!(
                w == 64 || value >> w == 0,
                "value {value} wider than {w} bits"
            );
            let value = value as u32;
            let (lane, position) = (i % NARROW_LANES, i / NARROW_LANES);
            let bit = position * w;
            let (k, shift) = (bit / 32, bit % 32);
            packed[k * NARROW_LANES + lane] |= value << shift;
            if shift + w > 32 {
                packed[(k + 1) * NARROW_LANES + lane] |= value >> (32 - shift);
            }
        }
        for word in &packed[..words / 4] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    } else {
        let mut packed = [0u64; BLOCK_VALUES];
        for (i, &value) in values.iter().enumerate() {
            debug_assert!(
                w == 64 || value >> w == 0,
                "value {value} wider than {w} bits"
            );
            let (lane, position) = (i % WIDE_LANES, i / WIDE_LANES);
            let bit = position * w;
            let (k, shift) = (bit / 64, bit % 64);
            packed[k * WIDE_LANES + lane] |= value << shift;
            if shift + w > 64 {
                packed[(k + 1) * WIDE_LANES + lane] |= value >> (64 - shift);
            }
        }
        for word in &packed[..words / 8] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
}

/// Appends `values` as whole blocks.
pub fn pack(values: &[u64], width: Width, out: &mut Vec<u8>) {
    for chunk in values.chunks(BLOCK_VALUES) {
        pack_block(chunk, width, out);
    }
}

/// Runs `f` compiled for the widest SIMD the CPU has (AVX2 on x86-64 when present): use it
/// around a decoding loop so that the code consuming unpacked values vectorizes as well.
#[inline]
pub fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { run_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Scratch space to decode one block into.
pub struct Scratch {
    /// Unpacked values of a narrow block.
    narrow: [u32; BLOCK_VALUES],
    /// Unpacked values (of any block, after [`Scratch::unpack`]).
    wide: [u64; BLOCK_VALUES],
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

impl Scratch {
    /// 12 KiB: fine on the stack of a decoding loop.
    pub fn new() -> Scratch {
        Scratch {
            narrow: [0; BLOCK_VALUES],
            wide: [0; BLOCK_VALUES],
        }
    }

    /// Unpacks the first `values` values (at most [`BLOCK_VALUES`]) of the block in `bytes`
    /// (at least [`block_bytes`]`(width, values)` long, which readers validate up front).
    #[inline]
    pub fn unpack(&mut self, bytes: &[u8], width: Width, values: usize) -> &[u64] {
        let values = values.min(BLOCK_VALUES);
        debug_assert!(bytes.len() >= block_bytes(width, values));
        if width.is_narrow() {
            unpack_narrow(
                width,
                values.div_ceil(NARROW_LANES),
                bytes,
                &mut self.narrow,
            );
            for (w, &n) in self.wide[..values].iter_mut().zip(&self.narrow[..values]) {
                *w = n as u64;
            }
        } else {
            unpack_wide(width, values.div_ceil(WIDE_LANES), bytes, &mut self.wide);
        }
        &self.wide[..values]
    }

    /// Like [`Scratch::unpack`] for a narrow width (at most 32 bits), without widening.
    #[inline]
    pub fn unpack_narrow(&mut self, bytes: &[u8], width: Width, values: usize) -> &[u32] {
        let values = values.min(BLOCK_VALUES);
        debug_assert!(width.is_narrow());
        debug_assert!(bytes.len() >= block_bytes(width, values));
        unpack_narrow(
            width,
            values.div_ceil(NARROW_LANES),
            bytes,
            &mut self.narrow,
        );
        &self.narrow[..values]
    }
}

/// Calls the kernel specialized for the runtime width; `$kernel::<W>` for every width in
/// `$($w)*`, `$zero` for width 0.
macro_rules! dispatch_width {
    ($width:expr, $kernel:ident, $zero:expr, $args:tt; $($w:literal)*) => {
        match $width.0 {
            0 => $zero,
            $($w => $kernel::<$w> $args,)*
            // Callers pass widths of their layout (`Width` guarantees 0..=64).
            other => unreachable!("bit width {other} in the wrong layout"),
        }
    };
}

/// Unpacks the first `positions` values of each lane of a narrow block.
#[inline]
fn unpack_narrow(width: Width, positions: usize, bytes: &[u8], out: &mut [u32; BLOCK_VALUES]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { unpack_narrow_avx2(width, positions, bytes, out) };
            return;
        }
    }
    unpack_narrow_portable(width, positions, bytes, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn unpack_narrow_avx2(width: Width, positions: usize, bytes: &[u8], out: &mut [u32; BLOCK_VALUES]) {
    unpack_narrow_portable(width, positions, bytes, out);
}

#[inline(always)]
fn unpack_narrow_portable(
    width: Width,
    positions: usize,
    bytes: &[u8],
    out: &mut [u32; BLOCK_VALUES],
) {
    dispatch_width!(width, narrow_kernel, out[..positions * NARROW_LANES].fill(0), (positions, bytes, out);
        1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}

/// Unpacks the first `positions` values of each lane of a wide block.
#[inline]
fn unpack_wide(width: Width, positions: usize, bytes: &[u8], out: &mut [u64; BLOCK_VALUES]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { unpack_wide_avx2(width, positions, bytes, out) };
            return;
        }
    }
    unpack_wide_portable(width, positions, bytes, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn unpack_wide_avx2(width: Width, positions: usize, bytes: &[u8], out: &mut [u64; BLOCK_VALUES]) {
    unpack_wide_portable(width, positions, bytes, out);
}

#[inline(always)]
fn unpack_wide_portable(
    width: Width,
    positions: usize,
    bytes: &[u8],
    out: &mut [u64; BLOCK_VALUES],
) {
    dispatch_width!(width, wide_kernel, (), (positions, bytes, out);
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64)
}

/// Word `k` of every lane of a narrow block, read straight from the bytes.
#[inline(always)]
fn narrow_words(bytes: &[u8], k: usize) -> [u32; NARROW_LANES] {
    let chunk: &[u8; NARROW_LANES * 4] = bytes[k * NARROW_LANES * 4..][..NARROW_LANES * 4]
        .try_into()
        .expect("slice of one word per lane");
    let mut words = [0u32; NARROW_LANES];
    for (lane, word) in words.iter_mut().enumerate() {
        let mut le = [0u8; 4];
        le.copy_from_slice(&chunk[lane * 4..lane * 4 + 4]);
        *word = u32::from_le_bytes(le);
    }
    words
}

#[inline(always)]
fn narrow_kernel<const W: usize>(positions: usize, bytes: &[u8], out: &mut [u32; BLOCK_VALUES]) {
    let mask = Width(W as u8).mask() as u32;
    for position in 0..positions.min(BLOCK_VALUES / NARROW_LANES) {
        let bit = position * W;
        let (k, shift) = (bit / 32, bit % 32);
        let low = narrow_words(bytes, k);
        let dst: &mut [u32; NARROW_LANES] = (&mut out[position * NARROW_LANES..][..NARROW_LANES])
            .try_into()
            .expect("slice of one value per lane");
        if shift + W > 32 {
            let high = narrow_words(bytes, k + 1);
            for lane in 0..NARROW_LANES {
                dst[lane] = ((low[lane] >> shift) | (high[lane] << (32 - shift))) & mask;
            }
        } else {
            for lane in 0..NARROW_LANES {
                dst[lane] = (low[lane] >> shift) & mask;
            }
        }
    }
}

/// Word `k` of every lane of a wide block, read straight from the bytes.
#[inline(always)]
fn wide_words(bytes: &[u8], k: usize) -> [u64; WIDE_LANES] {
    let chunk: &[u8; WIDE_LANES * 8] = bytes[k * WIDE_LANES * 8..][..WIDE_LANES * 8]
        .try_into()
        .expect("slice of one word per lane");
    let mut words = [0u64; WIDE_LANES];
    for (lane, word) in words.iter_mut().enumerate() {
        let mut le = [0u8; 8];
        le.copy_from_slice(&chunk[lane * 8..lane * 8 + 8]);
        *word = u64::from_le_bytes(le);
    }
    words
}

#[inline(always)]
fn wide_kernel<const W: usize>(positions: usize, bytes: &[u8], out: &mut [u64; BLOCK_VALUES]) {
    let mask = Width(W as u8).mask();
    for position in 0..positions.min(BLOCK_VALUES / WIDE_LANES) {
        let bit = position * W;
        let (k, shift) = (bit / 64, bit % 64);
        let low = wide_words(bytes, k);
        let dst: &mut [u64; WIDE_LANES] = (&mut out[position * WIDE_LANES..][..WIDE_LANES])
            .try_into()
            .expect("slice of one value per lane");
        if shift + W > 64 {
            let high = wide_words(bytes, k + 1);
            for lane in 0..WIDE_LANES {
                dst[lane] = ((low[lane] >> shift) | (high[lane] << (64 - shift))) & mask;
            }
        } else {
            for lane in 0..WIDE_LANES {
                dst[lane] = (low[lane] >> shift) & mask;
            }
        }
    }
}

/// Value `index` of the block in `bytes` (at least [`block_bytes`]`(width, index + 1)` long),
/// without unpacking the rest.
#[inline]
pub fn get(bytes: &[u8], width: Width, index: usize) -> u64 {
    let w = width.0 as usize;
    if w == 0 {
        return 0;
    }
    let (word_bytes, lanes) = if width.is_narrow() {
        (4, NARROW_LANES)
    } else {
        (8, WIDE_LANES)
    };
    let word_bits = word_bytes * 8;
    let (lane, position) = (index % lanes, index / lanes);
    let bit = position * w;
    let (k, shift) = (bit / word_bits, bit % word_bits);
    // Fixed-size loads: a copy of a variable length compiles to a call to `memcpy`.
    let word = |at: usize| {
        let from = at * word_bytes;
        if word_bytes == 4 {
            let le: [u8; 4] = bytes[from..from + 4].try_into().expect("4 bytes");
            u64::from(u32::from_le_bytes(le))
        } else {
            let le: [u8; 8] = bytes[from..from + 8].try_into().expect("8 bytes");
            u64::from_le_bytes(le)
        }
    };
    let mut value = word(k * lanes + lane) >> shift;
    if shift + w > word_bits {
        value |= word((k + 1) * lanes + lane) << (word_bits - shift);
    }
    value & width.mask()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, width: Width, seed: u64) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x & width.mask()
            })
            .collect()
    }

    #[test]
    fn every_width_round_trips() {
        let mut scratch = Scratch::new();
        for bits in 0..=64u8 {
            let width = Width::new(bits).unwrap();
            for n in [0, 1, 15, 16, 17, 33, 1000, 1023, 1024, 1025, 3000] {
                let values = sample(n, width, bits as u64 * 7919 + n as u64);
                let mut bytes = Vec::new();
                pack(&values, width, &mut bytes);
                assert_eq!(Some(bytes.len()), packed_bytes(n, width));
                let full = block_bytes(width, BLOCK_VALUES);
                for (b, chunk) in values.chunks(BLOCK_VALUES).enumerate() {
                    let block = &bytes[b * full..b * full + block_bytes(width, chunk.len())];
                    assert_eq!(
                        scratch.unpack(block, width, chunk.len()),
                        chunk,
                        "width {bits} n {n}"
                    );
                    if width.is_narrow() {
                        let narrow: Vec<u64> = scratch
                            .unpack_narrow(block, width, chunk.len())
                            .iter()
                            .map(|&v| v as u64)
                            .collect();
                        assert_eq!(narrow, chunk, "narrow width {bits} n {n}");
                    }
                    // A prefix decodes alone.
                    let half = chunk.len() / 2;
                    assert_eq!(scratch.unpack(block, width, half), &chunk[..half]);
                    for (i, &v) in chunk.iter().enumerate() {
                        assert_eq!(get(block, width, i), v, "width {bits} index {i}");
                    }
                }
                // The portable kernels agree with whatever `unpack` picked.
                if let Some(block) = values.chunks(BLOCK_VALUES).next() {
                    let bytes = &bytes[..block_bytes(width, block.len())];
                    let positions = block
                        .len()
                        .div_ceil(if width.is_narrow() { 32 } else { 16 });
                    if width.is_narrow() {
                        let mut out = [0u32; BLOCK_VALUES];
                        unpack_narrow_portable(width, positions, bytes, &mut out);
                        assert!(out.iter().zip(block).all(|(&a, &b)| a as u64 == b));
                    } else {
                        let mut out = [0u64; BLOCK_VALUES];
                        unpack_wide_portable(width, positions, bytes, &mut out);
                        assert_eq!(&out[..block.len()], block);
                    }
                }
            }
        }
    }

    #[test]
    fn widths_and_sizes() {
        assert_eq!(Width::for_max(0).bits(), 0);
        assert_eq!(Width::for_max(1).bits(), 1);
        assert_eq!(Width::for_max(255).bits(), 8);
        assert_eq!(Width::for_max(256).bits(), 9);
        assert_eq!(Width::for_max(u64::MAX).bits(), 64);
        assert!(Width::new(65).is_none());
        let w3 = Width::new(3).unwrap();
        assert_eq!(block_bytes(w3, BLOCK_VALUES), 128 * 3);
        // One value per lane needs one word per lane; 11 per lane (33 bits) need two.
        assert_eq!(block_bytes(w3, 1), 32 * 4);
        assert_eq!(block_bytes(w3, 32 * 10), 32 * 4);
        assert_eq!(block_bytes(w3, 32 * 10 + 1), 2 * 32 * 4);
        let w40 = Width::new(40).unwrap();
        assert_eq!(block_bytes(w40, BLOCK_VALUES), 128 * 40);
        assert_eq!(block_bytes(w40, 17), 16 * 8 * 2);
        assert_eq!(packed_bytes(1025, w3), Some(128 * 3 + 32 * 4));
        assert_eq!(packed_bytes(5, Width::ZERO), Some(0));
        assert_eq!(packed_bytes(usize::MAX, Width::new(64).unwrap()), None);
        assert_eq!(with_simd(|| 6 * 7), 42);
    }
}
