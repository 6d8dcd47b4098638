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

const WG: u32 = 256u;

// The flat index of (image, row, column, channel) in an NHWC map of h x w pixels.
fn at(b: u32, y: u32, x: u32, ch: u32, h: u32, w: u32) -> u32 {
    return ((b * h + y) * w + x) * p.channels + ch;
}

// One thread per output pixel and channel: out[y, x] = scale * (sum of the input window
// rows 2y..2y+1, columns 2x..2x+1). Neighbouring threads read neighbouring channels.
@compute @workgroup_size(WG)
fn pool_2x2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i >= p.batch * p.out_h * p.out_w * p.channels {
        return;
    }
    let ch = i % p.channels;
    let pixel = i / p.channels;
    let x = pixel % p.out_w;
    let y = (pixel / p.out_w) % p.out_h;
    let b = pixel / (p.out_w * p.out_h);
    let top = at(b, 2u * y, 2u * x, ch, p.in_h, p.in_w);
    let bottom = top + p.in_w * p.channels;
    let sum = src[top] + src[top + p.channels] + src[bottom] + src[bottom + p.channels];
    dst[i] = p.scale * sum;
}

// One thread per output pixel and channel: out[y, x] = scale * in[y / 2, x / 2], and zero
// where that input pixel does not exist (the odd last row or column that pooling dropped).
@compute @workgroup_size(WG)
fn unpool_2x2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i >= p.batch * p.out_h * p.out_w * p.channels {
        return;
    }
    let ch = i % p.channels;
    let pixel = i / p.channels;
    let x = pixel % p.out_w;
    let y = (pixel / p.out_w) % p.out_h;
    let b = pixel / (p.out_w * p.out_h);
    var value = 0.0;
    if y / 2u < p.in_h && x / 2u < p.in_w {
        value = p.scale * src[at(b, y / 2u, x / 2u, ch, p.in_h, p.in_w)];
    }
    dst[i] = value;
}
