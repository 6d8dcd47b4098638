// Random numbers from a counter-based generator, Threefry-2x32-20 (Salmon et al. 2011, as in
// Random123). Element pair k (elements 2k and 2k+1) of a stream at a step comes from the two
// words of threefry(key = (seed, stream), counter = (step, first_pair + k)), so every value
// depends only on (seed, stream, step, index), and the CPU twin reproduces the words bit for
// bit. Dropout draws its mask the same way, so the backward pass regenerates it instead of
// storing it. `out` holds stream elements first .. first + len - 1, so a batch split into
// chunks draws the same values as the whole batch.

struct Params {
    len: u32,
    // Index in the stream of out[0]; one thread per pair, whichever element of it comes first.
    first: u32,
    stream: u32,
    // rng_randint: values in [0, bound).
    bound: u32,
    // rng_uniform, rng_normal: out = offset + scale * (a uniform or normal variate);
    // dropout: kept elements are multiplied by scale = 1 / (1 - rate).
    offset: f32,
    scale: f32,
    // dropout: an element is dropped where its uniform variate is below rate.
    rate: f32,
}

// The trainer's per-step uniform (kernels::StepUniform), rewritten before each submission.
struct Step {
    step: u32,
    seed: u32,
    first_pair: u32,
    _pad: u32,
}

// rng_uniform and rng_normal write floats (and dropout scales them in place),
@group(0) @binding(0) var<storage, read_write> out_f32: array<f32>;
// rng_randint writes integers.
@group(0) @binding(0) var<storage, read_write> out_u32: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<uniform> step: Step;

// dropout reads the elements it scales through the texture that mirrors them (src/gpu.rs's
// QuadTexture) when TEXTURES is set: llvmpipe fetches a texel in a fraction of a storage
// load's time.
override TEXTURES: bool = false;
@group(0) @binding(3) var in_texture: texture_storage_2d<rgba32float, read>;

// Element i of the tensor dropout scales, before it does.
fn dropout_input(i: u32) -> f32 {
    if TEXTURES {
        return textureLoad(in_texture, element_texel(i))[i % 4u];
    }
    return out_f32[i];
}

const WG: u32 = 256u;
const INV_2_24: f32 = 1.0 / 16777216.0;
const PI: f32 = 3.14159265358979;

// Rotates a word left by r bits (0 < r < 32).
fn rotl(x: u32, r: u32) -> u32 {
    return (x << r) | (x >> (32u - r));
}

// Four Threefry rounds: add, rotate, xor, with one rotation amount per round.
fn rounds4(x: vec2<u32>, r: vec4<u32>) -> vec2<u32> {
    var a = x.x;
    var b = x.y;
    a += b;
    b = rotl(b, r.x) ^ a;
    a += b;
    b = rotl(b, r.y) ^ a;
    a += b;
    b = rotl(b, r.z) ^ a;
    a += b;
    b = rotl(b, r.w) ^ a;
    return vec2(a, b);
}

// Threefry-2x32-20: five blocks of four rounds, the key schedule (k0, k1, k2) injected after
// each block together with the block number. Unrolled, so no array is indexed at run time.
fn threefry(key: vec2<u32>, counter: vec2<u32>) -> vec2<u32> {
    let k2 = 0x1BD11BDAu ^ key.x ^ key.y;
    let ra = vec4(13u, 15u, 26u, 6u);
    let rb = vec4(17u, 29u, 16u, 24u);
    var x = counter + key;
    x = rounds4(x, ra) + vec2(key.y, k2 + 1u);
    x = rounds4(x, rb) + vec2(k2, key.x + 2u);
    x = rounds4(x, ra) + vec2(key.x, key.y + 3u);
    x = rounds4(x, rb) + vec2(key.y, k2 + 4u);
    x = rounds4(x, ra) + vec2(k2, key.x + 5u);
    return x;
}

// The stream's element pair of thread `gid`, or None past the last (as u32 max).
fn thread_pair(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    let pair = p.first / 2u + gid.x + gid.y * groups.x * WG;
    return select(0xFFFFFFFFu, pair, 2u * pair < p.first + p.len);
}

// Where element j (0 or 1) of `pair` lies in `out`, or p.len when outside it.
fn out_index(pair: u32, j: u32) -> u32 {
    let e = 2u * pair + j;
    return select(p.len, e - p.first, e >= p.first && e < p.first + p.len);
}

// The two words of an element pair of the stream.
fn pair_words(pair: u32) -> vec2<u32> {
    return threefry(vec2(step.seed, p.stream), vec2(step.step, step.first_pair + pair));
}

// A word's top 24 bits as a float in [0, 1), exactly.
fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * INV_2_24;
}

// Two standard normal variates from two words by Box-Muller: radius sqrt(-2 ln u1) with
// u1 in (0, 1], angle pi * (2 u2 - 1) in [-pi, pi), where sin and cos are most accurate.
fn box_muller(w: vec2<u32>) -> vec2<f32> {
    let h = w.x >> 8u;
    let u1 = f32(h + 1u) * INV_2_24;
    // d = 1 - u1, exactly. Near u1 = 1, -ln(u1) = d + d^2/2 + d^3/3 + ... is computed from
    // its series (error below d^5/5): WGSL lets log be off by 2^-21 absolute there, which
    // the square root would blow up to 1e-3 in the radius.
    let d = f32(0xFFFFFFu - h) * INV_2_24;
    let series = d * (1.0 + d * (0.5 + d * (1.0 / 3.0 + d * 0.25)));
    let neg_log = select(-log(u1), series, d < 1.0 / 64.0);
    let radius = sqrt(2.0 * neg_log);
    let angle = PI * (2.0 * unit(w.y) - 1.0);
    return radius * vec2(cos(angle), sin(angle));
}

// The high word of the 64-bit product a * b, from 16-bit halves (WGSL has no 64-bit integers).
fn mul_hi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let carry = ((lo_lo >> 16u) + (hi_lo & 0xFFFFu) + (lo_hi & 0xFFFFu)) >> 16u;
    return a_hi * b_hi + (hi_lo >> 16u) + (lo_hi >> 16u) + carry;
}

// One thread per element pair of the stream; elements outside out are skipped.
@compute @workgroup_size(WG)
fn rng_uniform(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let pair = thread_pair(gid, groups);
    if pair == 0xFFFFFFFFu {
        return;
    }
    let w = pair_words(pair);
    for (var j = 0u; j < 2u; j++) {
        let i = out_index(pair, j);
        if i < p.len {
            out_f32[i] = p.offset + p.scale * unit(w[j]);
        }
    }
}

@compute @workgroup_size(WG)
fn rng_normal(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let pair = thread_pair(gid, groups);
    if pair == 0xFFFFFFFFu {
        return;
    }
    let z = box_muller(pair_words(pair));
    for (var j = 0u; j < 2u; j++) {
        let i = out_index(pair, j);
        if i < p.len {
            out_f32[i] = p.offset + p.scale * z[j];
        }
    }
}

@compute @workgroup_size(WG)
fn rng_randint(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let pair = thread_pair(gid, groups);
    if pair == 0xFFFFFFFFu {
        return;
    }
    let w = pair_words(pair);
    for (var j = 0u; j < 2u; j++) {
        let i = out_index(pair, j);
        if i < p.len {
            out_u32[i] = mul_hi(w[j], p.bound);
        }
    }
}

// Inverted dropout in place: an element is kept where the uniform variate that rng_uniform
// would give it is at least rate, and then multiplied by 1 / (1 - rate), so that the mean
// is unchanged; the rest become zero.
@compute @workgroup_size(WG)
fn dropout(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let pair = thread_pair(gid, groups);
    if pair == 0xFFFFFFFFu {
        return;
    }
    let w = pair_words(pair);
    for (var j = 0u; j < 2u; j++) {
        let i = out_index(pair, j);
        if i < p.len {
            out_f32[i] = select(0.0, p.scale * dropout_input(i), unit(w[j]) >= p.rate);
        }
    }
}
