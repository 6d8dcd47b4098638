// Elementwise nonlinearities, in place: the forward pass rewrites x, the backward pass
// rewrites the upstream gradient dy using the forward output y. ACT, ALPHA, activate() and
// derivative() come from activate.wgsl, which src/shaders.rs puts before this file.

struct Params {
    len: u32,
}

// Both kernels take 4 consecutive elements per invocation as one vec4 (tensors are allocated
// in whole vec4s; elements from `len` on keep their values): llvmpipe turns each storage access
// into a loop over its 8 SIMD lanes, so a vec4 costs less than 4 floats.

// Both read their operands through the textures that mirror them (src/gpu.rs's QuadTexture)
// when TEXTURES is set: llvmpipe fetches a texel in a fraction of a storage load's time.
override TEXTURES: bool = false;

// Forward: x = act(x).
@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var x4: texture_storage_2d<rgba32float, read>;

// Backward: dy *= act'(.), read off y (its own binding list, separate from the forward's).
@group(0) @binding(0) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dy: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> pb: Params;
@group(0) @binding(3) var y4: texture_storage_2d<rgba32float, read>;
@group(0) @binding(4) var dy4: texture_storage_2d<rgba32float, read>;

const WG: u32 = 256u;

// Quad i of each operand. (One function per texture: naga's GLSL output rejects storage
// images as function arguments.)
fn x_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(x4, texel(i));
    }
    return x[i];
}

fn y_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(y4, texel(i));
    }
    return y[i];
}

fn dy_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(dy4, texel(i));
    }
    return dy[i];
}

@compute @workgroup_size(WG)
fn activation_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if 4u * i < p.len {
        let v = x_quad(i);
        let live = vec4(4u * i) + vec4(0u, 1u, 2u, 3u) < vec4(p.len);
        x[i] = select(v, vec4(activate(v.x), activate(v.y), activate(v.z), activate(v.w)), live);
    }
}

@compute @workgroup_size(WG)
fn activation_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if 4u * i < pb.len {
        let o = y_quad(i);
        let live = vec4(4u * i) + vec4(0u, 1u, 2u, 3u) < vec4(pb.len);
        let slope = vec4(derivative(o.x), derivative(o.y), derivative(o.z), derivative(o.w));
        dy[i] = dy_quad(i) * select(vec4(1.0), slope, live);
    }
}
