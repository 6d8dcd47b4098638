// Adam in PyTorch's form (eps added to sqrt(v_hat)) with Keras's eps, and RMSprop as Keras
// has it, both with Keras's clipvalue: each gradient element clipped to [-clip, clip] before
// the update when CLIP is set; and the exponential moving average of weights (train --ema).

override CLIP: bool = false;

struct Hyper {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    clip: f32,
}

// The trainer's per-step uniform (kernels::StepUniform), rewritten before each submission.
struct Step {
    step: u32,
    seed: u32,
    first_pair: u32,
    _pad: u32,
}

// Every kernel here takes 4 consecutive elements per invocation, read and written as one vec4
// (tensors are allocated in whole vec4s): llvmpipe turns each storage access into a loop over
// its 8 SIMD lanes, so a vec4 costs about what one float does. Elements from `len` on keep
// their values.
@group(0) @binding(0) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> hp: Hyper;
@group(0) @binding(5) var<uniform> step: Step;

// adam and rmsprop read their operands' quads from the textures that mirror them (src/gpu.rs's
// QuadTexture) when TEXTURES is set: llvmpipe fetches a texel in a fraction of a storage
// load's time, which made adam about 3x faster there. The buffers are still written.
override TEXTURES: bool = false;
@group(0) @binding(6) var params4: texture_storage_2d<rgba32float, read>;
@group(0) @binding(7) var grads4: texture_storage_2d<rgba32float, read>;
@group(0) @binding(8) var m4: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var v4: texture_storage_2d<rgba32float, read>;

const WG: u32 = 256u;

// Quad i of each operand, from its texture or its buffer. (One function per operand: naga's
// GLSL output rejects storage images as function arguments.)
fn params_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(params4, texel(i));
    }
    return params[i];
}

fn grads_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(grads4, texel(i));
    }
    return grads[i];
}

fn m_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(m4, texel(i));
    }
    return m[i];
}

fn v_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(v4, texel(i));
    }
    return v[i];
}

// The bias correction 1 - b^t, as (1 - b) * (1 + b + ... + b^(t-1)) with both factors built
// by binary powering. Every term is positive, so nothing cancels: pow(b, t) subtracted from 1
// would lose most of its digits for b = 0.999 and small t (and WGSL's pow may be coarse).
fn one_minus_pow(b: f32, t: u32) -> f32 {
    // b^n and 1 + b + ... + b^(n-1) for n = the bits of t consumed so far,
    var power = 1.0;
    var sum = 0.0;
    // and the same two for n = 2^i, the current bit.
    var bit_power = b;
    var bit_sum = 1.0;
    for (var n = t; n != 0u; n >>= 1u) {
        if (n & 1u) != 0u {
            sum += power * bit_sum;
            power *= bit_power;
        }
        bit_sum += bit_power * bit_sum;
        bit_power *= bit_power;
    }
    return (1.0 - b) * sum;
}

// The quad an invocation updates, and which of its elements lie before `len`.
struct Quad {
    i: u32,
    live: vec4<bool>,
}

// The invocation's quad, or none (i past the last) for invocations past the end.
fn quad(gid: vec3<u32>, groups: vec3<u32>, len: u32) -> Quad {
    let i = gid.x + gid.y * groups.x * WG;
    let live = vec4(4u * i) + vec4(0u, 1u, 2u, 3u) < vec4(len);
    return Quad(select(~0u, i, live.x), live);
}

// The gradient quad, clipped to [-clip, clip] when CLIP.
fn clipped(g: vec4<f32>, clip: f32) -> vec4<f32> {
    return select(g, clamp(g, vec4(-clip), vec4(clip)), CLIP);
}

// Four parameters per invocation: four loads, three stores, and the rest is arithmetic.
@compute @workgroup_size(WG)
fn adam(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let q = quad(gid, groups, hp.len);
    if q.i == ~0u {
        return;
    }
    let g = clipped(grads_quad(q.i), hp.clip);
    let m0 = m_quad(q.i);
    let v0 = v_quad(q.i);
    let w0 = params_quad(q.i);
    let mi = hp.beta1 * m0 + (1.0 - hp.beta1) * g;
    let vi = hp.beta2 * v0 + (1.0 - hp.beta2) * g * g;
    m[q.i] = select(m0, mi, q.live);
    v[q.i] = select(v0, vi, q.live);
    let m_hat = mi / one_minus_pow(hp.beta1, step.step);
    let v_hat = vi / one_minus_pow(hp.beta2, step.step);
    params[q.i] = select(w0, w0 - hp.lr * m_hat / (sqrt(v_hat) + hp.eps), q.live);
}

struct RmsHyper {
    len: u32,
    lr: f32,
    rho: f32,
    eps: f32,
    clip: f32,
}

// rmsprop keeps its mean square at binding 2, where adam keeps m, its hyper-parameters at
// binding 3 and the textures at 4 to 6: an entry point's bindings are numbered 0, 1, 2, ...
// (gpu::Gpu::dispatch).
@group(0) @binding(2) var<storage, read_write> mean_square: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> rms: RmsHyper;
@group(0) @binding(4) var rms_params4: texture_storage_2d<rgba32float, read>;
@group(0) @binding(5) var rms_grads4: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var mean_square4: texture_storage_2d<rgba32float, read>;

// rmsprop's quads, as adam's above.
fn rms_params_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(rms_params4, texel(i));
    }
    return params[i];
}

fn rms_grads_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(rms_grads4, texel(i));
    }
    return grads[i];
}

fn mean_square_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(mean_square4, texel(i));
    }
    return mean_square[i];
}

// Four parameters per invocation: v = rho v + (1 - rho) g^2, then w -= lr g / (sqrt(v) + eps).
@compute @workgroup_size(WG)
fn rmsprop(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let q = quad(gid, groups, rms.len);
    if q.i == ~0u {
        return;
    }
    let g = clipped(rms_grads_quad(q.i), rms.clip);
    let v0 = mean_square_quad(q.i);
    let w0 = rms_params_quad(q.i);
    let vi = rms.rho * v0 + (1.0 - rms.rho) * g * g;
    mean_square[q.i] = select(v0, vi, q.live);
    params[q.i] = select(w0, w0 - rms.lr * g / (sqrt(vi) + rms.eps), q.live);
}

struct EmaHyper {
    len: u32,
    decay: f32,
}

// ema_update's own bindings: the average it writes at 0, the weights it reads at 1.
@group(0) @binding(0) var<storage, read_write> average: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> current: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> ema: EmaHyper;

// Four weights per invocation: average = decay * average + (1 - decay) * weight, written as a step
// of (1 - decay) towards the weight, so that an average equal to its weight (a tensor training
// never changes) stays exactly equal instead of drifting by rounding.
@compute @workgroup_size(WG)
fn ema_update(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let q = quad(gid, groups, ema.len);
    if q.i == ~0u {
        return;
    }
    let a = average[q.i];
    average[q.i] = select(a, a + (1.0 - ema.decay) * (current[q.i] - a), q.live);
}
