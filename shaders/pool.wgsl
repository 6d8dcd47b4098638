// 2x2 windows with stride 2 on NHWC maps: average pooling and nearest-neighbour upsampling,
// forward and backward. Each pass is one of two shapes: every output element sums one 2x2
// window of its input (average pooling, the upsampling gradient), or every output element
// copies the input element whose window covers it (upsampling, the pooling gradient).

struct Params {
    batch: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    // Multiplies every output: 1/4 for average pooling and its gradient, 1 for upsampling.
    scale: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
// The same maps as quads of channels, for the *_quads entry points, which run when the
// channels are a multiple of 4 (p.channels then counts quads): a thread per quad divides its
// index into pixel coordinates once for 4 elements, and llvmpipe has no vector division.
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst4: array<vec4<f32>>;

const WG: u32 = 256u;

// Every entry point reads src through the texture that mirrors it (src/gpu.rs's QuadTexture)
// when TEXTURES is set: llvmpipe fetches a texel in a fraction of a storage load's time.
override TEXTURES: bool = false;
@group(0) @binding(3) var src_texture: texture_storage_2d<rgba32float, read>;

// Quad i of src.
fn src_quad(i: u32) -> vec4<f32> {
    if TEXTURES {
        return textureLoad(src_texture, texel(i));
    }
    return src4[i];
}

// Element i of src. (Not through src_quad: an entry point may use only one of src and src4.)
fn src_at(i: u32) -> f32 {
    if TEXTURES {
        return textureLoad(src_texture, element_texel(i))[i % 4u];
    }
    return src[i];
}

// The flat index of (image, row, column, channel) in an NHWC map of h x w pixels.
fn at(b: u32, y: u32, x: u32, ch: u32, h: u32, w: u32) -> u32 {
    return ((b * h + y) * w + x) * p.channels + ch;
}

// Output element i of this thread (gid folded over the grid), or none past the output.
fn output_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

fn output_len() -> u32 {
    return p.batch * p.out_h * p.out_w * p.channels;
}

// Output element i's (image, row, column, channel).
fn output_coords(i: u32) -> vec4<u32> {
    let pixel = i / p.channels;
    return vec4(pixel / (p.out_w * p.out_h), (pixel / p.out_w) % p.out_h, pixel % p.out_w,
                i % p.channels);
}

// The input index of the top-left element of output element i's 2x2 window.
fn window_top(i: u32) -> u32 {
    let o = output_coords(i);
    return at(o.x, 2u * o.y, 2u * o.z, o.w, p.in_h, p.in_w);
}

// The input index that covers output element i, and whether that input pixel exists (not the
// odd last row or column that pooling dropped).
fn covering(i: u32) -> vec2<u32> {
    let o = output_coords(i);
    let exists = o.y / 2u < p.in_h && o.z / 2u < p.in_w;
    let pixel = select(vec2(0u), o.yz / 2u, exists);
    return vec2(at(o.x, pixel.x, pixel.y, o.w, p.in_h, p.in_w), u32(exists));
}

// One thread per output pixel and channel: out[y, x] = scale * (sum of the input window
// rows 2y..2y+1, columns 2x..2x+1). Neighbouring threads read neighbouring channels.
@compute @workgroup_size(WG)
fn pool_2x2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = output_index(gid, groups);
    if i >= output_len() {
        return;
    }
    let top = window_top(i);
    let bottom = top + p.in_w * p.channels;
    let sum = src_at(top) + src_at(top + p.channels) + src_at(bottom) + src_at(bottom + p.channels);
    dst[i] = p.scale * sum;
}

// pool_2x2 on quads of channels.
@compute @workgroup_size(WG)
fn pool_2x2_quads(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = output_index(gid, groups);
    if i >= output_len() {
        return;
    }
    let top = window_top(i);
    let bottom = top + p.in_w * p.channels;
    let sum = src_quad(top) + src_quad(top + p.channels) + src_quad(bottom) +
              src_quad(bottom + p.channels);
    dst4[i] = p.scale * sum;
}

// One thread per output pixel and channel: out[y, x] = scale * in[y / 2, x / 2], and zero
// where that input pixel does not exist (the odd last row or column that pooling dropped).
@compute @workgroup_size(WG)
fn unpool_2x2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = output_index(gid, groups);
    if i >= output_len() {
        return;
    }
    let source = covering(i);
    dst[i] = select(0.0, p.scale * src_at(source.x), source.y != 0u);
}

// unpool_2x2 on quads of channels.
@compute @workgroup_size(WG)
fn unpool_2x2_quads(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = output_index(gid, groups);
    if i >= output_len() {
        return;
    }
    let source = covering(i);
    dst4[i] = select(vec4(0.0), p.scale * src_quad(source.x), source.y != 0u);
}
