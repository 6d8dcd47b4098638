//! CPU twin of `kernels::rng`: the same counter-based generator, bit for bit.
//!
//! Element pair k (elements 2k and 2k+1) of a stream at a step comes from the two words of
//! Threefry-2x32-20 with key (seed, stream) and counter (step, first_pair + k), so a value depends only on
//! (seed, stream, step, index), never on the length asked for or the order threads run in.

use crate::kernels::StepUniform;

/// Threefry's rotation amounts for 2x32 words, one per round, repeating every 8 rounds.
const ROTATIONS: [u32; 8] = [13, 15, 26, 6, 17, 29, 16, 24];
/// Skein's key-schedule parity constant.
const PARITY: u32 = 0x1BD1_1BDA;

/// Threefry-2x32 with 20 rounds (Salmon et al. 2011, as in Random123): `counter` encrypted
/// under `key`.
pub fn threefry2x32(key: [u32; 2], counter: [u32; 2]) -> [u32; 2] {
    let ks = [key[0], key[1], PARITY ^ key[0] ^ key[1]];
    let mut x = [counter[0].wrapping_add(ks[0]), counter[1].wrapping_add(ks[1])];
    for round in 0..20 {
        x[0] = x[0].wrapping_add(x[1]);
        x[1] = x[1].rotate_left(ROTATIONS[round % 8]) ^ x[0];
        // The key is injected again after every 4 rounds, with the injection count.
        if round % 4 == 3 {
            let s = round / 4 + 1;
            x[0] = x[0].wrapping_add(ks[s % 3]);
            x[1] = x[1].wrapping_add(ks[(s + 1) % 3]).wrapping_add(s as u32);
        }
    }
    x
}

/// The random word behind element `i` of `stream` at this step.
fn word(i: usize, stream: u32, step: &StepUniform) -> u32 {
    threefry2x32([step.seed, stream], [step.step, step.first_pair + (i / 2) as u32])[i % 2]
}

/// A word's top 24 bits as a float in [0, 1), exactly.
fn unit(w: u32) -> f32 {
    (w >> 8) as f32 / (1u32 << 24) as f32
}

/// Uniform floats: out[i] = low + (high - low) * u, u in [0, 1) with 24 random bits.
pub fn rng_uniform(
    out: &mut [f32],
    len: usize,
    low: f32,
    high: f32,
    stream: u32,
    step: &StepUniform,
) {
    for (i, o) in out[..len].iter_mut().enumerate() {
        *o = low + (high - low) * unit(word(i, stream, step));
    }
}

/// Normal floats by Box-Muller on each pair's two words: radius sqrt(-2 ln u1) with u1 in
/// (0, 1], angle pi * (2 u2 - 1); element 2k takes the cosine, 2k+1 the sine. Computed in f64,
/// so the GPU's f32 result is judged against the exact value of the same formula.
pub fn rng_normal(
    out: &mut [f32],
    len: usize,
    mean: f32,
    std: f32,
    stream: u32,
    step: &StepUniform,
) {
    for (i, o) in out[..len].iter_mut().enumerate() {
        let k = i & !1;
        let u1 = ((word(k, stream, step) >> 8) + 1) as f64 / (1u64 << 24) as f64;
        let u2 = (word(k + 1, stream, step) >> 8) as f64 / (1u64 << 24) as f64;
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::PI * (2.0 * u2 - 1.0);
        let z = if i % 2 == 0 { radius * angle.cos() } else { radius * angle.sin() };
        *o = mean + std * z as f32;
    }
}

/// Integers uniform in [0, bound): the high word of word * bound, whose bias is at most
/// bound / 2^32 (1.4e-5 for a 60000-image dataset).
pub fn rng_randint(out: &mut [u32], len: usize, bound: u32, stream: u32, step: &StepUniform) {
    for (i, o) in out[..len].iter_mut().enumerate() {
        *o = ((word(i, stream, step) as u64 * bound as u64) >> 32) as u32;
    }
}

/// Inverted dropout in place: element i, element first + i of the stream, is kept where its
/// uniform variate (as [`rng_uniform`] on [0, 1) gives it) is at least `rate`, and then
/// multiplied by 1 / (1 - rate); the others become zero.
fn dropout(t: &mut [f32], len: usize, first: usize, rate: f32, stream: u32, step: &StepUniform) {
    assert!((0.0..1.0).contains(&rate), "dropout rate {rate} is outside [0, 1)");
    let scale = 1.0 / (1.0 - rate);
    for (i, v) in t[..len].iter_mut().enumerate() {
        *v = if unit(word(first + i, stream, step)) >= rate { scale * *v } else { 0.0 };
    }
}

/// x = x * mask / (1 - rate), each element dropped with probability `rate`; x[0] is element
/// `first` of the stream.
pub fn dropout_forward(
    x: &mut [f32],
    len: usize,
    first: usize,
    rate: f32,
    stream: u32,
    step: &StepUniform,
) {
    dropout(x, len, first, rate, stream, step)
}

/// dy = dy * mask / (1 - rate), with the mask [`dropout_forward`] drew at this step.
pub fn dropout_backward(
    dy: &mut [f32],
    len: usize,
    first: usize,
    rate: f32,
    stream: u32,
    step: &StepUniform,
) {
    dropout(dy, len, first, rate, stream, step)
}
