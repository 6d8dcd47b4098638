// 2-D convolution family on NHWC activations and [kh, kw, in_c, out_c] weights, as implicit
// GEMMs. Seen as a matrix [batch*out_h*out_w, out_c], a conv's output is im2col(x)·W; im2col(x)
// is never stored: each load gathers its elements from x.
//
// - conv_gather_*: y = act(conv(x, W) (+ bias)), or for backward data its adjoint
//   dx = act(convᵀ(dy, W) (+ bias)), which is also the transposed convolution's forward; act is
//   the layer's activation (activate.wgsl, before this file); in gradients, the identity, or
//   the derivative of the activation before the layer (GRADIENT). Both are "each pixel of one
//   image = Σ over taps of a pixel of the other image times that tap's [in_c, out_c] slice of W".
// - conv_weight_grad_*: dW = im2col(x)ᵀ·dy, rows (kh, kw, in_c), reduced over the output pixels.
// - One-channel rows: where one side of a conv has a single channel and the stride along w is
//   1, the GEMM view wastes most of a tile (one live column) or loads each value once per tap.
//   conv_rows_one_channel (one output channel), conv_weight_grad_rows_one_channel (its dW) and
//   conv_rows_from_one_channel (a one-channel gathered image) instead walk rows of up to 28
//   pixels and slide the values under them along the filter's taps (see there).
//
// Written for lavapipe as matmul.wgsl is (see there): each invocation keeps 8 x 4 (portable) or
// up to 32 x 4 (subgroup) outputs in 4x4 accumulator blocks, loads 4 channels at once (one vec4
// when the channel count allows), and in the subgroup kernels each gathered value is loaded by
// one lane and shared with subgroupBroadcast.
//
// A gather tile is one pixel of TILE_ROWS images, so all its rows need the same taps: the taps
// that land in the padding (forward) or between the strides (backward data) are never visited
// rather than visited and masked. For a strided transposed conv that is the phase
// decomposition; for 'same' convs on 4x4 maps it halves the work. A weight-gradient tile is
// TILE_ROWS rows of dW, which share a tap whenever in_c is a multiple of TILE_ROWS: it then sums
// over only the output pixels whose input pixel for that tap lies inside the image.

struct Params {
    batch: u32,
    // Conv input x [batch, x_h, x_w, x_c] and output y [batch, y_h, y_w, y_c].
    x_h: u32,
    x_w: u32,
    x_c: u32,
    y_h: u32,
    y_w: u32,
    y_c: u32,
    k_h: u32,
    k_w: u32,
    s_h: u32,
    s_w: u32,
    // Tap (kh, kw) connects x pixel (oh*s_h + kh - pad_top, ow*s_w + kw - pad_left) to y
    // pixel (oh, ow).
    pad_top: u32,
    pad_left: u32,
    // conv_gather computes dx from dy: its tiles are pixels of x, the gathered image is dy.
    backward_data: u32,
    has_bias: u32,
    // Portable kernels: a workgroup's 64 invocations are wg_cols blocks of 4 columns by
    // 64 / wg_cols blocks of 8 rows. Outputs narrower than 32 columns get narrower, taller
    // workgroups instead of idle invocations.
    wg_cols: u32,
    // conv_weight_grad: workgroups along the rows of dW per batch slice, and images per slice.
    // Where dW has too few tiles to fill the device the batch is cut into slices, each
    // workgroup sums one, and slice s writes its partial dW to c at s * (dW's length); the
    // host then sums them (bias.wgsl's column sums of the [slices, dW] matrix).
    row_groups: u32,
    slice_images: u32,
    // conv_gather_portable and _tiled: the same for the gathered channels, where the output
    // has too few tiles: split s sums channels [s * split_channels, (s + 1) * split_channels)
    // and writes its partial output at s * split_stride (splits.wgsl sums them). Unsplit, all
    // channels and 0.
    split_channels: u32,
    split_stride: u32,
}

// Override constants select what changes the inner loops; what only changes a tile's setup or
// its stores is in Params, so that fewer pipelines need compiling.
// The gathered image's channel count is a multiple of 4: read 4 channels through a4.
override VEC_A: bool = false;
// conv_gather: a tap's weight slice, as op(W) [gathered channels, output channels], is stored
// transposed ([output, gathered]); when one side is 1 the launcher picks the layout whose rows
// run along the other, so that they can be read as vec4.
override TRANS_B: bool = false;
// The stored rows of b (weight slices, or dy in conv_weight_grad) have a multiple of 4 elements.
override VEC_B: bool = false;
// a4 / b4 mirror a / b even where VEC_A / VEC_B are off: the scalar reads then fetch one float
// of a texel, still several times faster on llvmpipe than a storage load (1-channel images).
override MIRROR_A: bool = false;
override MIRROR_B: bool = false;
// conv_gather: the gathered image has one channel, so a reduction step takes 4 taps along w
// instead of 4 channels of one tap (3 of which would be padding).
override PACK_TAPS: bool = false;
// Rows of a tile: images of one pixel in conv_gather, rows of dW in conv_weight_grad. 8 in the
// portable kernels; 8, 16 or 32 in the subgroup kernels, the fewest that cover the batch or dW
// (more rows per tile share each B load among more FMAs: 1.3-1.7x from 8 to 16 or 32).
override TILE_ROWS: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
// The gathered image: x (forward, weight gradient) or dy (backward data).
// a4 and b4 mirror a and b in rgba32float textures (see texel), read where VEC_A / VEC_B.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var a4: texture_storage_2d<rgba32float, read>;
// W (conv_gather) or dy (conv_weight_grad).
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var b4: texture_storage_2d<rgba32float, read>;
// y (forward), dx (backward data) or dW (weight gradient).
// By quads (store.wgsl): element e is c[e / 4][e % 4].
@group(0) @binding(5) var<storage, read_write> c: array<vec4<f32>>;
// The bias (Params.has_bias), or with GRADIENT the output of the activation whose gradient c
// is, shaped as c; one binding for both, as in matmul.wgsl. Last, because only conv_gather has
// it (a pipeline's layout holds the bindings it uses).
@group(0) @binding(6) var<storage, read> epilogue: array<f32>;
// The activation output again, mirrored in a texture, read where VEC_EPILOGUE (conv_gather only).
@group(0) @binding(7) var e4: texture_storage_2d<rgba32float, read>;

// The kernels work in 4x4 blocks, as matmul.wgsl does: an A block's column r holds output row
// r's 4 reduction values of a step, a B block's column q holds reduction step q's 4 output
// columns, so `acc += b * a` adds the step to an accumulator block whose column r is output row
// r. The accumulators are separately named blocks rather than an array indexed in a loop,
// which llvmpipe kept in memory at half the speed.

// Quad q of a and of b from their mirrors; with quad views (src/gpu.rs's
// Shader::with_quad_views), from the buffers themselves as vec4s. The only reads of a4 and b4.
fn a4_quad(q: u32) -> vec4<f32> {
    return textureLoad(a4, texel(q));
}

fn b4_quad(q: u32) -> vec4<f32> {
    return textureLoad(b4, texel(q));
}

// Element i of a and of b, from their mirrors where MIRROR_A / MIRROR_B.
fn a_at(i: u32) -> f32 {
    if MIRROR_A {
        return a4_quad(i / 4u)[i % 4u];
    }
    return a[i];
}

fn b_at(i: u32) -> f32 {
    if MIRROR_B {
        return b4_quad(i / 4u)[i % 4u];
    }
    return b[i];
}

// Channels c0..c0+3 of the gathered image's pixel at `base`, zero past its `len` channels.
fn a_quad(base: u32, c0: u32, len: u32) -> vec4<f32> {
    if VEC_A {
        return a4_quad((base + c0) / 4u);
    }
    var v = vec4(0.0);
    for (var q = 0u; q < 4u; q++) {
        if c0 + q < len {
            v[q] = a_at(base + c0 + q);
        }
    }
    return v;
}

// Elements c0..c0+3 of the `len`-element row of b at `base`: the vec4 read is kept inside the
// row (clamped lanes are never stored), the scalar ones give zero past its end.
fn b_quad(base: u32, c0: u32, len: u32) -> vec4<f32> {
    if VEC_B {
        return b4_quad((base + min(c0, len - 4u)) / 4u);
    }
    var v = vec4(0.0);
    for (var q = 0u; q < 4u; q++) {
        if c0 + q < len {
            v[q] = b_at(base + c0 + q);
        }
    }
    return v;
}

// The workgroup's row group: y, folded into z past the grid's y limit.
fn row_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y + wg.z * nwg.y;
}

// Column block and row block of a portable kernel's invocation in row group `group`: the
// workgroup's 64 invocations split as Params.wg_cols says.
fn portable_blocks(wg: vec3<u32>, group: u32, lid: u32) -> vec2<u32> {
    let rows = 64u / p.wg_cols;
    return vec2(wg.x * p.wg_cols + lid % p.wg_cols, group * rows + lid / p.wg_cols);
}

// ---- conv_gather: the tiles are pixels of the output image ("dst": y, or x for backward
// data); the reduction runs over taps and the channels of the gathered image ("src").

fn dst_dims() -> vec3<u32> {
    return select(vec3(p.y_h, p.y_w, p.y_c), vec3(p.x_h, p.x_w, p.x_c), p.backward_data != 0u);
}

fn src_dims() -> vec3<u32> {
    return select(vec3(p.x_h, p.x_w, p.x_c), vec3(p.y_h, p.y_w, p.y_c), p.backward_data != 0u);
}

// The taps along one axis that connect dst coordinate d to a src coordinate inside [0, len):
// first, last and step. Empty when first > last.
struct Taps {
    first: i32,
    last: i32,
    step: i32,
}

fn taps(d: u32, len: u32, k: u32, s: u32, pad: u32) -> Taps {
    let last = i32(k) - 1;
    let si = i32(s);
    if p.backward_data != 0u {
        // d + pad = src*s + t: t ≡ d + pad (mod s), src = (d + pad - t) / s in [0, len).
        let dp = i32(d + pad);
        var first = max(dp - (i32(len) - 1) * si, 0);
        first += (dp - first) % si;
        return Taps(first, min(dp, last), si);
    }
    // src = d*s + t - pad in [0, len).
    let before = i32(pad) - i32(d) * si;
    return Taps(max(before, 0), min(before + i32(len) - 1, last), 1);
}

// The src coordinate that tap t connects to dst coordinate d (t from `taps`).
fn src_coord(d: u32, t: i32, s: u32, pad: u32) -> u32 {
    if p.backward_data != 0u {
        return u32(i32(d + pad) - t) / s;
    }
    return u32(i32(d * s) + t - i32(pad));
}

// One gather tile: images n0..n0+TILE_ROWS-1 at dst pixel `pix`, the taps it needs, and its sizes.
struct GatherTile {
    n0: u32,
    pix: u32,
    dh: u32,
    dw: u32,
    th: Taps,
    tw: Taps,
    dst: vec3<u32>,
    src: vec3<u32>,
    // Floats per src image.
    src_image: u32,
    // Where the tile's split of the output starts (Params.split_stride).
    out_base: u32,
}

// Tile number `group` (pixel-major: the image blocks of one pixel are neighbours, so they
// share the weights in cache), or a tile with n0 = batch when `group` is past the end.
fn gather_tile(group: u32) -> GatherTile {
    let dst = dst_dims();
    let src = src_dims();
    let blocks = (p.batch + TILE_ROWS - 1u) / TILE_ROWS;
    var t: GatherTile;
    t.dst = dst;
    t.src = src;
    t.src_image = src.x * src.y * src.z;
    if group >= dst.x * dst.y * blocks {
        t.n0 = p.batch;
        return t;
    }
    t.pix = group / blocks;
    t.n0 = (group % blocks) * TILE_ROWS;
    t.dh = t.pix / dst.y;
    t.dw = t.pix % dst.y;
    t.th = taps(t.dh, src.x, p.k_h, p.s_h, p.pad_top);
    t.tw = taps(t.dw, src.y, p.k_w, p.s_w, p.pad_left);
    return t;
}

// Offset, within a src image, of the pixel that taps (kh, kw) connect to the tile's pixel.
fn src_pixel(t: GatherTile, kh: i32, kw: i32) -> u32 {
    let sh = src_coord(t.dh, kh, p.s_h, p.pad_top);
    let sw = src_coord(t.dw, kw, p.s_w, p.pad_left);
    return (sh * t.src.y + sw) * t.src.z;
}

// Offset of src image n; images past the batch read the last one (their rows are never stored).
fn src_image(t: GatherTile, n: u32) -> u32 {
    return min(n, p.batch - 1u) * t.src_image;
}

// Offset of the [x_c, y_c] weight slice of tap (kh, kw).
fn w_slice(kh: i32, kw: i32) -> u32 {
    return (u32(kh) * p.k_w + u32(kw)) * p.x_c * p.y_c;
}

// The B block of op(W_tap) at rows k0..k0+3, columns j..j+3, where op(W_tap) is [k gathered
// channels, n output channels] at `slice`; zero where k0+q >= k (b_quad's elements past the
// row are zero), so that a partial last step adds nothing. Selects rather than branches around
// the fetches (see next_pixel): 1.05-1.4x on the presets' convs.
fn w_block(slice: u32, k0: u32, j: u32, k: u32, n: u32) -> mat4x4<f32> {
    if TRANS_B {
        // Stored [n, k]: one quad per output channel, transposed in registers. Channels past n
        // read channel n - 1 and are zeroed (a select: see next_pixel on branches).
        let live = vec4(j) + vec4(0u, 1u, 2u, 3u) < vec4(n);
        let col = min(vec4(j) + vec4(0u, 1u, 2u, 3u), vec4(n - 1u));
        return transpose(mat4x4(select(vec4(0.0), b_quad(slice + col.x * k, k0, k), live.x),
                                select(vec4(0.0), b_quad(slice + col.y * k, k0, k), live.y),
                                select(vec4(0.0), b_quad(slice + col.z * k, k0, k), live.z),
                                select(vec4(0.0), b_quad(slice + col.w * k, k0, k), live.w)));
    }
    let live = vec4(k0) + vec4(0u, 1u, 2u, 3u) < vec4(k);
    let row = min(vec4(k0) + vec4(0u, 1u, 2u, 3u), vec4(k - 1u));
    return mat4x4(select(vec4(0.0), b_quad(slice + row.x * n, j, n), live.x),
                  select(vec4(0.0), b_quad(slice + row.y * n, j, n), live.y),
                  select(vec4(0.0), b_quad(slice + row.z * n, j, n), live.z),
                  select(vec4(0.0), b_quad(slice + row.w * n, j, n), live.w));
}

// With PACK_TAPS, the 4 taps (kh, kw + e*step) of a step: which exist, their pixels' offsets
// within a src image, and their weight slices.
struct TapQuad {
    live: vec4<bool>,
    pixel: vec4<u32>,
    slice: vec4<u32>,
}

fn tap_quad(t: GatherTile, kh: i32, kw: i32) -> TapQuad {
    var q: TapQuad;
    for (var e = 0; e < 4; e++) {
        let tap = kw + e * t.tw.step;
        q.live[e] = tap <= t.tw.last;
        if q.live[e] {
            q.pixel[e] = src_pixel(t, kh, tap);
            q.slice[e] = w_slice(kh, tap);
        }
    }
    return q;
}

// The one gathered channel of the src image at `image` for the 4 taps, zero past the last.
fn a_taps(image: u32, q: TapQuad) -> vec4<f32> {
    var v = vec4(0.0);
    for (var e = 0u; e < 4u; e++) {
        v[e] = select(0.0, a_at(image + q.pixel[e]), q.live[e]);
    }
    return v;
}

// The B block of weights from the one gathered channel to output channels j..j+3 for the 4
// taps. Past the last tap a_taps is zero already; these are not read only because their
// slices may lie past W's end.
fn w_taps(q: TapQuad, j: u32, n: u32) -> mat4x4<f32> {
    return mat4x4(select(vec4(0.0), b_quad(q.slice.x, j, n), q.live.x),
                  select(vec4(0.0), b_quad(q.slice.y, j, n), q.live.y),
                  select(vec4(0.0), b_quad(q.slice.z, j, n), q.live.z),
                  select(vec4(0.0), b_quad(q.slice.w, j, n), q.live.w));
}

// The accumulators' starting value for output channels j..j+3: their bias, or zero. Added
// here rather than in gather_store, as in matmul.wgsl's bias_quad: with both a bias and an
// activation in the stores, llvmpipe ran the whole kernel much slower.
fn gather_bias(j: u32, n: u32) -> mat4x4<f32> {
    var start = vec4(0.0);
    if p.has_bias != 0u {
        let last = n - 1u;
        start = vec4(epilogue[min(j, last)], epilogue[min(j + 1u, last)],
                     epilogue[min(j + 2u, last)], epilogue[min(j + 3u, last)]);
    }
    return mat4x4(start, start, start, start);
}

// Writes elements k0..k0+3 of the `len`-element row at `base` (those inside it) through the
// activation ACT of activate.wgsl, or times its derivative at `epilogue` with GRADIENT: the
// stores of every gather kernel (store.wgsl).
fn quad_store(base: u32, k0: u32, len: u32, v: vec4<f32>) {
    store_quad(base, k0, len, fused_quad(base + k0, v));
}

// Writes the tile's row for image n, columns j..j+3 (see quad_store), skipping what lies
// outside.
fn gather_store(t: GatherTile, n: u32, j: u32, v: vec4<f32>) {
    if n >= p.batch {
        return;
    }
    quad_store(t.out_base + (n * t.dst.x * t.dst.y + t.pix) * t.dst.z, j, t.dst.z, v);
}

// gather_store for images n..n+3, from an accumulator block.
fn gather_store_block(t: GatherTile, n: u32, j: u32, v: mat4x4<f32>) {
    gather_store(t, n, j, v[0]);
    gather_store(t, n + 1u, j, v[1]);
    gather_store(t, n + 2u, j, v[2]);
    gather_store(t, n + 3u, j, v[3]);
}

// The A block of images n..n+3: channels c0..c0+3 of their pixel at `pixel`.
fn image_block(t: GatherTile, n: u32, pixel: u32, c0: u32) -> mat4x4<f32> {
    let len = t.src.z;
    return mat4x4(a_quad(src_image(t, n) + pixel, c0, len),
                  a_quad(src_image(t, n + 1u) + pixel, c0, len),
                  a_quad(src_image(t, n + 2u) + pixel, c0, len),
                  a_quad(src_image(t, n + 3u) + pixel, c0, len));
}

// The A block of images n..n+3 at the 4 taps of a PACK_TAPS step.
fn image_taps_block(t: GatherTile, n: u32, taps: TapQuad) -> mat4x4<f32> {
    return mat4x4(a_taps(src_image(t, n), taps), a_taps(src_image(t, n + 1u), taps),
                  a_taps(src_image(t, n + 2u), taps), a_taps(src_image(t, n + 3u), taps));
}

// Portable gather: each invocation computes 8 images x 4 channels of one pixel from its own
// loads, 12 per step of 4 channels for 128 FMAs.
@compute @workgroup_size(64)
fn conv_gather_portable(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let group = row_group(wg, nwg);
    let blocks = portable_blocks(wg, group % p.row_groups, lid);
    var t = gather_tile(blocks.y);
    let split = group / p.row_groups;
    // Past the batch, or a workgroup past the last split (the grid's fold can add some).
    if t.n0 >= p.batch || split * p.split_channels >= t.src.z {
        return;
    }
    t.out_base = split * p.split_stride;
    let first_channel = split * p.split_channels;
    let end_channel = min(first_channel + p.split_channels, t.src.z);
    let j = blocks.x * 4u;
    var acc0 = gather_bias(j, t.dst.z);
    var acc1 = acc0;
    let kw_step = t.tw.step * select(1, 4, PACK_TAPS);
    for (var kh = t.th.first; kh <= t.th.last; kh += t.th.step) {
        for (var kw = t.tw.first; kw <= t.tw.last; kw += kw_step) {
            if PACK_TAPS {
                let taps = tap_quad(t, kh, kw);
                let b = w_taps(taps, j, t.dst.z);
                acc0 += b * image_taps_block(t, t.n0, taps);
                acc1 += b * image_taps_block(t, t.n0 + 4u, taps);
                continue;
            }
            let pixel = src_pixel(t, kh, kw);
            let slice = w_slice(kh, kw);
            for (var c0 = first_channel; c0 < end_channel; c0 += 4u) {
                let b = w_block(slice, c0, j, t.src.z, t.dst.z);
                acc0 += b * image_block(t, t.n0, pixel, c0);
                acc1 += b * image_block(t, t.n0 + 4u, pixel, c0);
            }
        }
    }
    gather_store_block(t, t.n0, j, acc0);
    gather_store_block(t, t.n0 + 4u, j, acc1);
}

// ---- conv_weight_grad: dW[k, j] = Σ_m im2col(x)[m, k] · dy[m, j], k = (kh, kw, ci) and
// m = (n, oh, ow). Its A operand is im2col(x)ᵀ, read (like matmul's TRANS_A) as quads of 4
// consecutive k at one m: 4 channels of one x pixel.
//
// Each tile walks its batch slice in one go. Walking it in cache-sized blocks of images with a
// workgroup barrier after each, so that a workgroup's tiles read a block while it is hot, was
// 1.5-1.9x slower on the presets' large layers and 5x on D's first conv: llvmpipe turns a
// shader with barriers into coroutines, and their frames cost more than the cache misses.

// Taps and channels of dW rows k0..k0+3 (clamped into dW).
struct RowQuad {
    kh: vec4<u32>,
    kw: vec4<u32>,
    ci: vec4<u32>,
}

fn row_quad(k0: u32) -> RowQuad {
    let rows = p.k_h * p.k_w * p.x_c;
    // With VEC_A the quad is one vec4 of x: keep its start on a multiple of 4 inside dW.
    let start = select(k0, min(k0, rows - 4u), VEC_A);
    let k = min(vec4(start) + vec4(0u, 1u, 2u, 3u), vec4(rows - 1u));
    let tap = k / p.x_c;
    return RowQuad(tap / p.k_w, tap % p.k_w, k % p.x_c);
}

// The output pixels a weight tile sums over: oh in [lo.x, hi.x], ow in [lo.y, hi.y], every image.
struct Rect {
    lo: vec2<i32>,
    hi: vec2<i32>,
}

// The output coordinates o whose input coordinate o*s + t - pad lies in [0, len), for tap t.
fn out_range(t: u32, len: u32, out_len: u32, s: u32, pad: u32) -> vec2<i32> {
    let before = i32(pad) - i32(t);
    let last_in = i32(len) - 1 + before;
    let lo = (max(before, 0) + i32(s) - 1) / i32(s);
    let hi = select(-1, min(last_in / i32(s), i32(out_len) - 1), last_in >= 0);
    return vec2(lo, hi);
}

// The rectangle for dW rows i0..i0+count-1: exact when they share a tap, else every output
// pixel (each load then checks its own tap); empty past the last row.
fn weight_rect(i0: u32, count: u32) -> Rect {
    let rows = p.k_h * p.k_w * p.x_c;
    if i0 >= rows {
        return Rect(vec2(0), vec2(-1));
    }
    let tap = i0 / p.x_c;
    if tap != min(i0 + count - 1u, rows - 1u) / p.x_c {
        return Rect(vec2(0), vec2(i32(p.y_h) - 1, i32(p.y_w) - 1));
    }
    let rh = out_range(tap / p.k_w, p.x_h, p.y_h, p.s_h, p.pad_top);
    let rw = out_range(tap % p.k_w, p.x_w, p.y_w, p.s_w, p.pad_left);
    return Rect(vec2(rh.x, rw.x), vec2(rh.y, rw.y));
}

// The rectangle's first output pixel (n, oh, ow) in image n0, or n = n_end when it is empty.
fn first_pixel(r: Rect, n0: u32, n_end: u32) -> vec3<u32> {
    let empty = any(r.lo > r.hi);
    return vec3(select(n0, n_end, empty), u32(max(r.lo.x, 0)), u32(max(r.lo.y, 0)));
}

// The output pixel after m in the rectangle: ow fastest, then oh, then the image. Selects, not
// branches: llvmpipe masks both sides of a branch and runs the texel fetches inside one far
// slower, so the weight-gradient step has none (with x_quad and dy_quad reading clamped
// addresses and selecting zero, the kernel got 1.1-1.45x faster).
fn next_pixel(m: vec3<u32>, r: Rect) -> vec3<u32> {
    let wrap_w = i32(m.z) >= r.hi.y;
    let wrap_h = wrap_w && i32(m.y) >= r.hi.x;
    let ow = select(m.z + 1u, u32(r.lo.y), wrap_w);
    let oh = select(m.y, select(m.y + 1u, u32(r.lo.x), wrap_h), wrap_w);
    return vec3(m.x + u32(wrap_h), oh, ow);
}

// The 4 output pixels of a reduction step starting at m.
fn step_pixels(m: vec3<u32>, r: Rect) -> array<vec3<u32>, 4> {
    let m1 = next_pixel(m, r);
    let m2 = next_pixel(m1, r);
    return array(m, m1, m2, next_pixel(m2, r));
}

// x at output pixel m for the 4 dW rows of `rq`: their im2col elements, zero where the tap
// falls in the padding or m is past the batch (pixels past the slice's last image add nothing
// because their dy rows are zero).
fn x_quad(m: vec3<u32>, rq: RowQuad) -> vec4<f32> {
    // Coordinates above the padding wrap around to huge values and fail the bounds test.
    let ih = m.y * p.s_h + rq.kh - p.pad_top;
    let iw = m.z * p.s_w + rq.kw - p.pad_left;
    let ok = (ih < vec4(p.x_h)) & (iw < vec4(p.x_w)) & vec4(m.x < p.batch);
    let off = ((m.x * p.x_h + ih) * p.x_w + iw) * p.x_c + rq.ci;
    if VEC_A {
        // One tap for all four: ci.x is a multiple of 4.
        let last = p.batch * p.x_h * p.x_w * p.x_c / 4u - 1u;
        return select(vec4(0.0), a4_quad(min(off.x / 4u, last)), ok.x);
    }
    let last = p.batch * p.x_h * p.x_w * p.x_c - 1u;
    let safe = min(off, vec4(last));
    return select(vec4(0.0), vec4(a_at(safe.x), a_at(safe.y), a_at(safe.z), a_at(safe.w)), ok);
}

// dy at pixel m, columns j..j+3, zero past the slice's last image (n_end).
fn dy_quad(m: vec3<u32>, j: u32, n_end: u32) -> vec4<f32> {
    let row = ((min(m.x, p.batch - 1u) * p.y_h + m.y) * p.y_w + m.z) * p.y_c;
    return select(vec4(0.0), b_quad(row, j, p.y_c), m.x < n_end);
}

// The B block of a step: dy at its 4 pixels.
fn dy_block(ms: array<vec3<u32>, 4>, j: u32, n_end: u32) -> mat4x4<f32> {
    return mat4x4(dy_quad(ms[0], j, n_end), dy_quad(ms[1], j, n_end), dy_quad(ms[2], j, n_end),
                  dy_quad(ms[3], j, n_end));
}

// The batch slice a weight-gradient workgroup sums (see Params.row_groups): its images
// [x, y), and the workgroup's row group within the slice (z).
fn weight_slice(wg: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let group = row_group(wg, nwg);
    let slice = group / p.row_groups;
    let begin = slice * p.slice_images;
    return vec3(begin, min(begin + p.slice_images, p.batch), group % p.row_groups);
}

// Writes dW row i, columns j..j+3 of the slice starting at image n0 (added to their values when
// accumulating), skipping what lies outside.
fn weight_store(n0: u32, i: u32, j: u32, v: vec4<f32>) {
    let rows = p.k_h * p.k_w * p.x_c;
    // Past the last row, or a workgroup past the last slice (the grid's fold can add some).
    if i >= rows || n0 >= p.batch {
        return;
    }
    store_quad((n0 / p.slice_images * rows + i) * p.y_c, j, p.y_c, v);
}

// weight_store for rows i..i+3, from an accumulator block.
fn weight_store_block(n0: u32, i: u32, j: u32, v: mat4x4<f32>) {
    weight_store(n0, i, j, v[0]);
    weight_store(n0, i + 1u, j, v[1]);
    weight_store(n0, i + 2u, j, v[2]);
    weight_store(n0, i + 3u, j, v[3]);
}

// Portable weight gradient: each invocation computes 8 rows x 4 columns of dW from its own
// loads, 12 per step of 4 output pixels for 128 FMAs.
@compute @workgroup_size(64)
fn conv_weight_grad_portable(@builtin(workgroup_id) wg: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let slice = weight_slice(wg, nwg);
    let blocks = portable_blocks(wg, slice.z, lid);
    let i0 = blocks.y * 8u;
    let j = blocks.x * 4u;
    let rect = weight_rect(i0, 8u);
    let rq0 = row_quad(i0);
    let rq1 = row_quad(i0 + 4u);
    var acc0 = mat4x4<f32>();
    var acc1 = acc0;
    var m = first_pixel(rect, slice.x, slice.y);
    while m.x < slice.y {
        let ms = step_pixels(m, rect);
        let b = dy_block(ms, j, slice.y);
        // transpose: x_quad gives 4 rows at one pixel, a block's column is one row.
        acc0 += b * transpose(mat4x4(x_quad(ms[0], rq0), x_quad(ms[1], rq0),
                                     x_quad(ms[2], rq0), x_quad(ms[3], rq0)));
        acc1 += b * transpose(mat4x4(x_quad(ms[0], rq1), x_quad(ms[1], rq1),
                                     x_quad(ms[2], rq1), x_quad(ms[3], rq1)));
        m = next_pixel(ms[3], rect);
    }
    weight_store_block(slice.x, i0, j, acc0);
    weight_store_block(slice.x, i0 + 4u, j, acc1);
}

// ---- One-channel rows: a forward conv with one output channel and stride 1 along w. The
// tiles above gather each input quad once per tap that reads it; here an invocation computes
// up to 28 neighbouring outputs (ROW_BLOCKS blocks of 4) of two output rows of one image. For
// each input row under them and each channel quad it loads the quads under the outputs once
// and slides them along the taps, applying each tap's weights for both output rows: a quad then
// serves every tap along w of both rows, and a weight quad up to 28 outputs. Reads as the
// gathers do (a_quad, b_quad: VEC_A, VEC_B and the mirrors).

// The filter's width, at most 8: the slide along it is written out for 8 taps, and the taps
// past FILTER_W fold away (a loop over the taps kept the window in memory, at 11 instructions
// per multiply).
override FILTER_W: u32 = 1u;
// Outputs per invocation: ROW_BLOCKS blocks of 4, at most 7.
override ROW_BLOCKS: u32 = 4u;

// The quads under the outputs at one tap: block b's column j is output 4b + j's. Blocks past
// ROW_BLOCKS are never stored, so their work folds away.
struct Window {
    x0: mat4x4<f32>,
    x1: mat4x4<f32>,
    x2: mat4x4<f32>,
    x3: mat4x4<f32>,
    x4: mat4x4<f32>,
    x5: mat4x4<f32>,
    x6: mat4x4<f32>,
}

// The outputs' sums so far, a vec4 per block.
struct Sums {
    s0: vec4<f32>,
    s1: vec4<f32>,
    s2: vec4<f32>,
    s3: vec4<f32>,
    s4: vec4<f32>,
    s5: vec4<f32>,
    s6: vec4<f32>,
}

// acc plus one tap: w * x_b is the 4 dot products of the tap's weights with block b's columns.
fn tap(acc: Sums, win: Window, w: vec4<f32>) -> Sums {
    return Sums(acc.s0 + w * win.x0,
                acc.s1 + w * win.x1,
                acc.s2 + w * win.x2,
                acc.s3 + w * win.x3,
                acc.s4 + w * win.x4,
                acc.s5 + w * win.x5,
                acc.s6 + w * win.x6);
}

// The window one pixel to the right along w: `next` enters after the last block.
fn slide(win: Window, next: vec4<f32>) -> Window {
    return Window(mat4x4(win.x0[1], win.x0[2], win.x0[3], select(next, win.x1[0], ROW_BLOCKS > 1u)),
                  mat4x4(win.x1[1], win.x1[2], win.x1[3], select(next, win.x2[0], ROW_BLOCKS > 2u)),
                  mat4x4(win.x2[1], win.x2[2], win.x2[3], select(next, win.x3[0], ROW_BLOCKS > 3u)),
                  mat4x4(win.x3[1], win.x3[2], win.x3[3], select(next, win.x4[0], ROW_BLOCKS > 4u)),
                  mat4x4(win.x4[1], win.x4[2], win.x4[3], select(next, win.x5[0], ROW_BLOCKS > 5u)),
                  mat4x4(win.x5[1], win.x5[2], win.x5[3], select(next, win.x6[0], ROW_BLOCKS > 6u)),
                  mat4x4(win.x6[1], win.x6[2], win.x6[3], next));
}

// The window's quads and the sums of the two output rows so far.
struct RowPair {
    win: Window,
    first: Sums,
    second: Sums,
}

// The next tap along w: the window slides (see slide) and adds that tap's weights for each
// row, `w_first` and `w_second`.
fn slide_tap(r: RowPair, next: vec4<f32>, w_first: vec4<f32>, w_second: vec4<f32>) -> RowPair {
    let win = slide(r.win, next);
    return RowPair(win, tap(r.first, win, w_first), tap(r.second, win, w_second));
}

// Weights of channels c0..c0+3 at tap kw of the filter row at `w_row`.
fn weight_quad(w_row: u32, kw: u32, c0: u32) -> vec4<f32> {
    return b_quad(w_row + kw * p.x_c, c0, p.x_c);
}

// Channels c0..c0+3 of x pixel (row, col) of the row at `row_base` (the image row's first
// element), zero outside the image.
fn window_quad(row_base: u32, col: i32, c0: u32) -> vec4<f32> {
    if col < 0 || col >= i32(p.x_w) {
        return vec4(0.0);
    }
    return a_quad(row_base + u32(col) * p.x_c, c0, p.x_c);
}

// Pixels col..col+3 of the row, as window_quad reads them.
fn window_block(row_base: u32, col: i32, c0: u32) -> mat4x4<f32> {
    return mat4x4(window_quad(row_base, col, c0), window_quad(row_base, col + 1, c0),
                  window_quad(row_base, col + 2, c0), window_quad(row_base, col + 3, c0));
}

// The window at tap 0 of outputs starting at column col0 + pad_left of the row at `row_base`.
fn window_at(row_base: u32, col0: i32, c0: u32) -> Window {
    return Window(window_block(row_base, col0, c0), window_block(row_base, col0 + 4, c0),
                  window_block(row_base, col0 + 8, c0), window_block(row_base, col0 + 12, c0),
                  window_block(row_base, col0 + 16, c0), window_block(row_base, col0 + 20, c0),
                  window_block(row_base, col0 + 24, c0));
}

// The slide's step to tap kw > 0 (see slide_tap), for the rows of the filter at `w_rows` with
// the weights of each row times `live`; `next` is the column after the window at tap 0.
fn next_tap(r: RowPair, row_base: u32, next: i32, c0: u32, w_rows: vec2<u32>, live: vec2<f32>,
            kw: u32) -> RowPair {
    return slide_tap(r, window_quad(row_base, next + i32(kw) - 1, c0),
                     weight_quad(w_rows.x, kw, c0) * live.x,
                     weight_quad(w_rows.y, kw, c0) * live.y);
}

// Stores the blocks of a segment (outputs ow0.. of the row at `row_base`, those inside it).
fn sums_store(row_base: u32, ow0: u32, v: Sums) {
    quad_store(row_base, ow0, p.y_w, v.s0);
    if ROW_BLOCKS > 1u {
        quad_store(row_base, ow0 + 4u, p.y_w, v.s1);
    }
    if ROW_BLOCKS > 2u {
        quad_store(row_base, ow0 + 8u, p.y_w, v.s2);
    }
    if ROW_BLOCKS > 3u {
        quad_store(row_base, ow0 + 12u, p.y_w, v.s3);
    }
    if ROW_BLOCKS > 4u {
        quad_store(row_base, ow0 + 16u, p.y_w, v.s4);
    }
    if ROW_BLOCKS > 5u {
        quad_store(row_base, ow0 + 20u, p.y_w, v.s5);
    }
    if ROW_BLOCKS > 6u {
        quad_store(row_base, ow0 + 24u, p.y_w, v.s6);
    }
}

// One invocation per (image, pair of output rows, segment), images fastest, so that the 8 lanes
// of a SIMD vector share their rows and segment and with them every loop bound and padding
// test. Input row ih meets the first row at tap row ih - top and the second s_h rows later;
// a tap row outside the filter gets zero weights (of 16 row taps a 7-row filter at stride 1
// wastes 2). 1.15x faster than one output row per invocation on dcgan's 7x7. The slide along
// the taps moves each block's columns one place down (see slide).
@compute @workgroup_size(64)
fn conv_rows_one_channel(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let segs = (p.y_w + ROW_BLOCKS * 4u - 1u) / (ROW_BLOCKS * 4u);
    let pairs = (p.y_h + 1u) / 2u;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.batch * pairs * segs {
        return;
    }
    let n = i % p.batch;
    let oh = (i / p.batch) / segs * 2u;
    let ow0 = (i / p.batch) % segs * ROW_BLOCKS * 4u;
    let has_second = oh + 1u < p.y_h;
    var bias = 0.0;
    if p.has_bias != 0u {
        bias = epilogue[0];
    }
    let start = vec4(bias);
    var first = Sums(start, start, start, start, start, start, start);
    var second = first;
    let col0 = i32(ow0) - i32(p.pad_left);
    let top = i32(oh * p.s_h) - i32(p.pad_top);
    let last = top + i32(p.k_h) - 1 + select(0, i32(p.s_h), has_second);
    for (var ih = max(top, 0); ih <= min(last, i32(p.x_h) - 1); ih++) {
        // The tap rows that meet the two output rows here, and which of them are in the filter.
        let kh = vec2(ih - top, ih - top - i32(p.s_h));
        let live = vec2(select(0.0, 1.0, kh.x < i32(p.k_h)),
                        select(0.0, 1.0, kh.y >= 0 && has_second));
        let w_rows = vec2<u32>(clamp(kh, vec2(0), vec2(i32(p.k_h) - 1))) * FILTER_W * p.x_c;
        let row_base = (n * p.x_h + u32(ih)) * p.x_w * p.x_c;
        for (var c0 = 0u; c0 < p.x_c; c0 += 4u) {
            let win = window_at(row_base, col0, c0);
            let next = col0 + i32(ROW_BLOCKS * 4u);
            var r = RowPair(win, tap(first, win, weight_quad(w_rows.x, 0u, c0) * live.x),
                            tap(second, win, weight_quad(w_rows.y, 0u, c0) * live.y));
            if FILTER_W > 1u {
                r = next_tap(r, row_base, next, c0, w_rows, live, 1u);
            }
            if FILTER_W > 2u {
                r = next_tap(r, row_base, next, c0, w_rows, live, 2u);
            }
            if FILTER_W > 3u {
                r = next_tap(r, row_base, next, c0, w_rows, live, 3u);
            }
            if FILTER_W > 4u {
                r = next_tap(r, row_base, next, c0, w_rows, live, 4u);
            }
            if FILTER_W > 5u {
                r = next_tap(r, row_base, next, c0, w_rows, live, 5u);
            }
            if FILTER_W > 6u {
                r = next_tap(r, row_base, next, c0, w_rows, live, 6u);
            }
            if FILTER_W > 7u {
                r = next_tap(r, row_base, next, c0, w_rows, live, 7u);
            }
            first = r.first;
            second = r.second;
        }
    }
    let out_row = (n * p.y_h + oh) * p.y_w;
    sums_store(out_row, ow0, first);
    if has_second {
        sums_store(out_row + p.y_w, ow0, second);
    }
}

// One-channel rows' weight gradient: dW[kh, kw, c] = the sum over images and output pixels
// of x[n, oh*s_h + kh - pad_top, ow + kw - pad_left, c] dy[n, oh, ow]. An invocation owns one
// tap row and channel quad of one batch slice (Params.slice_images, as conv_weight_grad's)
// and walks the slice's output rows in segments of ROW_BLOCKS blocks with the forward's
// window: at tap kw, the sum over b of x_b * dy_b adds the segment to that tap's 4 channels.
// Channel quads vary fastest, so the lanes of a SIMD vector share their tap row and slice and
// with them every loop bound.

// dy at outputs ow0..ow0+3 of the row at `row_base`, zero past the row's end (VEC_B only
// where the rows are whole quads: b_quad's clamped read would shift a partial one).
fn dy_row_quad(row_base: u32, ow0: u32) -> vec4<f32> {
    let live = vec4(ow0) + vec4(0u, 1u, 2u, 3u) < vec4(p.y_w);
    return select(vec4(0.0), b_quad(row_base, ow0, p.y_w), live);
}

// The segment's contribution to one tap: the window's quads weighted by their outputs' dy.
fn window_sum(win: Window, dy: Sums) -> vec4<f32> {
    var sum = win.x0 * dy.s0;
    if ROW_BLOCKS > 1u {
        sum += win.x1 * dy.s1;
    }
    if ROW_BLOCKS > 2u {
        sum += win.x2 * dy.s2;
    }
    if ROW_BLOCKS > 3u {
        sum += win.x3 * dy.s3;
    }
    if ROW_BLOCKS > 4u {
        sum += win.x4 * dy.s4;
    }
    if ROW_BLOCKS > 5u {
        sum += win.x5 * dy.s5;
    }
    if ROW_BLOCKS > 6u {
        sum += win.x6 * dy.s6;
    }
    return sum;
}

// Adds channels c0..c0+3 of tap `tap` (kh * k_w + kw) to dW, or to its batch slice's partial
// dW; on dW itself, to its values when ACCUMULATE.
fn tap_grad_store(n_begin: u32, tap: u32, c0: u32, v: vec4<f32>) {
    let len = p.k_h * p.k_w * p.x_c;
    store_quad(n_begin / p.slice_images * len + tap * p.x_c, c0, p.x_c, v);
}

@compute @workgroup_size(64)
fn conv_weight_grad_rows_one_channel(@builtin(global_invocation_id) gid: vec3<u32>,
                                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let quads = (p.x_c + 3u) / 4u;
    let slices = (p.batch + p.slice_images - 1u) / p.slice_images;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= quads * p.k_h * slices {
        return;
    }
    let c0 = i % quads * 4u;
    let kh = i / quads % p.k_h;
    let n_begin = i / (quads * p.k_h) * p.slice_images;
    let n_end = min(n_begin + p.slice_images, p.batch);
    let rows = out_range(kh, p.x_h, p.y_h, p.s_h, p.pad_top);
    let seg = ROW_BLOCKS * 4u;
    var t0 = vec4(0.0);
    var t1 = vec4(0.0);
    var t2 = vec4(0.0);
    var t3 = vec4(0.0);
    var t4 = vec4(0.0);
    var t5 = vec4(0.0);
    var t6 = vec4(0.0);
    var t7 = vec4(0.0);
    for (var n = n_begin; n < n_end; n++) {
        for (var oh = rows.x; oh <= rows.y; oh++) {
            let ih = u32(oh) * p.s_h + kh - p.pad_top;
            let x_row = (n * p.x_h + ih) * p.x_w * p.x_c;
            let dy_row = (n * p.y_h + u32(oh)) * p.y_w;
            for (var ow0 = 0u; ow0 < p.y_w; ow0 += seg) {
                let col0 = i32(ow0) - i32(p.pad_left);
                let dy = Sums(dy_row_quad(dy_row, ow0),
                               dy_row_quad(dy_row, ow0 + 4u),
                               dy_row_quad(dy_row, ow0 + 8u),
                               dy_row_quad(dy_row, ow0 + 12u),
                               dy_row_quad(dy_row, ow0 + 16u),
                               dy_row_quad(dy_row, ow0 + 20u),
                               dy_row_quad(dy_row, ow0 + 24u),
                );
                var win = window_at(x_row, col0, c0);
                let next = col0 + i32(seg);
                t0 += window_sum(win, dy);
                if FILTER_W > 1u {
                    win = slide(win, window_quad(x_row, next, c0));
                    t1 += window_sum(win, dy);
                }
                if FILTER_W > 2u {
                    win = slide(win, window_quad(x_row, next + 1, c0));
                    t2 += window_sum(win, dy);
                }
                if FILTER_W > 3u {
                    win = slide(win, window_quad(x_row, next + 2, c0));
                    t3 += window_sum(win, dy);
                }
                if FILTER_W > 4u {
                    win = slide(win, window_quad(x_row, next + 3, c0));
                    t4 += window_sum(win, dy);
                }
                if FILTER_W > 5u {
                    win = slide(win, window_quad(x_row, next + 4, c0));
                    t5 += window_sum(win, dy);
                }
                if FILTER_W > 6u {
                    win = slide(win, window_quad(x_row, next + 5, c0));
                    t6 += window_sum(win, dy);
                }
                if FILTER_W > 7u {
                    win = slide(win, window_quad(x_row, next + 6, c0));
                    t7 += window_sum(win, dy);
                }
            }
        }
    }
    tap_grad_store(n_begin, kh * FILTER_W, c0, t0);
    if FILTER_W > 1u {
        tap_grad_store(n_begin, kh * FILTER_W + 1u, c0, t1);
    }
    if FILTER_W > 2u {
        tap_grad_store(n_begin, kh * FILTER_W + 2u, c0, t2);
    }
    if FILTER_W > 3u {
        tap_grad_store(n_begin, kh * FILTER_W + 3u, c0, t3);
    }
    if FILTER_W > 4u {
        tap_grad_store(n_begin, kh * FILTER_W + 4u, c0, t4);
    }
    if FILTER_W > 5u {
        tap_grad_store(n_begin, kh * FILTER_W + 5u, c0, t5);
    }
    if FILTER_W > 6u {
        tap_grad_store(n_begin, kh * FILTER_W + 6u, c0, t6);
    }
    if FILTER_W > 7u {
        tap_grad_store(n_begin, kh * FILTER_W + 7u, c0, t7);
    }
}

// ---- Rows from one channel: the gathers whose gathered image has one channel, at stride 1
// along w: a forward conv of a one-channel input, or the input gradient of a conv to one
// channel (and so a transposed conv from one). Their reduction is over the taps alone, 4 at a
// step in conv_gather's PACK_TAPS, with a load per image and tap. Here an invocation computes
// 4 output channels of ROW_BLOCKS blocks of 4 neighbouring pixels of one image row: for each
// tap row it loads the one-channel values under them once and slides them along the taps,
// as the one-channel rows above slide their quads. Output channel quads vary fastest, so the
// lanes of a SIMD vector share their row, segment and loop bounds. The accumulators are a
// Window (block b's column j: pixel 4b + j's 4 channels), the values a Sums (block b holds
// those under pixels 4b..4b+3).

// Value col of the one-channel src row at `row` (its first element), zero outside the row.
fn src_value(row: u32, col: i32, src_w: u32) -> f32 {
    if col < 0 || col >= i32(src_w) {
        return 0.0;
    }
    return a_at(row + u32(col));
}

fn src_values(row: u32, col: i32, src_w: u32) -> vec4<f32> {
    return vec4(src_value(row, col, src_w), src_value(row, col + 1, src_w),
                src_value(row, col + 2, src_w), src_value(row, col + 3, src_w));
}

// The 4 channels w times each of the 4 values d: column j is w * d[j].
fn outer(w: vec4<f32>, d: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(w * d.x, w * d.y, w * d.z, w * d.w);
}

// acc plus one tap, whose weights to the output channel quad are w.
fn spread_tap(acc: Window, d: Sums, w: vec4<f32>) -> Window {
    return Window(acc.x0 + outer(w, d.s0),
                  acc.x1 + outer(w, d.s1),
                  acc.x2 + outer(w, d.s2),
                  acc.x3 + outer(w, d.s3),
                  acc.x4 + outer(w, d.s4),
                  acc.x5 + outer(w, d.s5),
                  acc.x6 + outer(w, d.s6));
}

// The values one pixel to the right: `next` enters after the last block.
fn slide_values(d: Sums, next: f32) -> Sums {
    return Sums(vec4(d.s0.yzw, select(next, d.s1.x, ROW_BLOCKS > 1u)),
                vec4(d.s1.yzw, select(next, d.s2.x, ROW_BLOCKS > 2u)),
                vec4(d.s2.yzw, select(next, d.s3.x, ROW_BLOCKS > 3u)),
                vec4(d.s3.yzw, select(next, d.s4.x, ROW_BLOCKS > 4u)),
                vec4(d.s4.yzw, select(next, d.s5.x, ROW_BLOCKS > 5u)),
                vec4(d.s5.yzw, select(next, d.s6.x, ROW_BLOCKS > 6u)),
                vec4(d.s6.yzw, next));
}

// Weights from the one channel to output channels c0..c0+3 at tap (kh, kw) of the filter,
// W [kh, kw, ...] with `len` output channels per tap.
fn tap_weights(kh: i32, kw: u32, c0: u32, len: u32) -> vec4<f32> {
    return b_quad((u32(kh) * p.k_w + kw) * len, c0, len);
}

// The tap along w of slide step t (see conv_rows_from_one_channel).
fn slide_tap_index(t: u32, backward: bool) -> u32 {
    return select(t, FILTER_W - 1u - t, backward);
}

// The values under the pixels and their sums so far.
struct Spread {
    values: Sums,
    acc: Window,
}

// The slide's step t > 0 along the taps of the src row at `row` (see
// conv_rows_from_one_channel): the values move one pixel right and add that tap's weights to
// output channels c0..c0+3 (of `len`).
fn next_spread(r: Spread, row: u32, b0: i32, src_w: u32, kh: i32, t: u32, c0: u32, len: u32,
               backward: bool) -> Spread {
    let values = slide_values(r.values, src_value(row, b0 + i32(ROW_BLOCKS * 4u + t) - 1, src_w));
    let w = tap_weights(kh, slide_tap_index(t, backward), c0, len);
    return Spread(values, spread_tap(r.acc, values, w));
}

// Stores a block: pixels d0..d0+3 of the row (those inside it), channels c0..c0+3; the first
// pixel's elements start at `pixel`. The pixels are spelled out: a loop over them indexed the
// block in memory.
fn pixels_store(pixel: u32, d0: u32, c0: u32, dst: vec3<u32>, v: mat4x4<f32>) {
    if d0 < dst.y {
        quad_store(pixel, c0, dst.z, v[0]);
    }
    if d0 + 1u < dst.y {
        quad_store(pixel + dst.z, c0, dst.z, v[1]);
    }
    if d0 + 2u < dst.y {
        quad_store(pixel + 2u * dst.z, c0, dst.z, v[2]);
    }
    if d0 + 3u < dst.y {
        quad_store(pixel + 3u * dst.z, c0, dst.z, v[3]);
    }
}

@compute @workgroup_size(64)
fn conv_rows_from_one_channel(@builtin(global_invocation_id) gid: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
    let dst = dst_dims();
    let src = src_dims();
    let quads = (dst.z + 3u) / 4u;
    let segs = (dst.y + ROW_BLOCKS * 4u - 1u) / (ROW_BLOCKS * 4u);
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.batch * dst.x * segs * quads {
        return;
    }
    let c0 = i % quads * 4u;
    let d0 = i / quads % segs * ROW_BLOCKS * 4u;
    let dh = i / (quads * segs) % dst.x;
    let n = i / (quads * segs * dst.x);
    let th = taps(dh, src.x, p.k_h, p.s_h, p.pad_top);
    // Step t of the slide along w reads src column b0 + j + t for pixel d0 + j, which is tap
    // t (forward: d + t - pad) or k_w - 1 - t (backward data: d + pad - tap).
    let backward = p.backward_data != 0u;
    let b0 = select(i32(d0) - i32(p.pad_left), i32(d0 + p.pad_left) - i32(p.k_w - 1u), backward);
    let src_w = src.y;
    var bias = vec4(0.0);
    if p.has_bias != 0u {
        bias = gather_bias(c0, dst.z)[0];
    }
    var acc = Window(mat4x4(bias, bias, bias, bias), mat4x4(bias, bias, bias, bias),
                     mat4x4(bias, bias, bias, bias), mat4x4(bias, bias, bias, bias),
                     mat4x4(bias, bias, bias, bias), mat4x4(bias, bias, bias, bias),
                     mat4x4(bias, bias, bias, bias));
    for (var kh = th.first; kh <= th.last; kh += th.step) {
        let row = (n * src.x + src_coord(dh, kh, p.s_h, p.pad_top)) * src_w;
        let d = Sums(src_values(row, b0, src_w),
                     src_values(row, b0 + 4, src_w),
                     src_values(row, b0 + 8, src_w),
                     src_values(row, b0 + 12, src_w),
                     src_values(row, b0 + 16, src_w),
                     src_values(row, b0 + 20, src_w),
                     src_values(row, b0 + 24, src_w));
        let w = tap_weights(kh, slide_tap_index(0u, backward), c0, dst.z);
        var r = Spread(d, spread_tap(acc, d, w));
        if FILTER_W > 1u {
            r = next_spread(r, row, b0, src_w, kh, 1u, c0, dst.z, backward);
        }
        if FILTER_W > 2u {
            r = next_spread(r, row, b0, src_w, kh, 2u, c0, dst.z, backward);
        }
        if FILTER_W > 3u {
            r = next_spread(r, row, b0, src_w, kh, 3u, c0, dst.z, backward);
        }
        if FILTER_W > 4u {
            r = next_spread(r, row, b0, src_w, kh, 4u, c0, dst.z, backward);
        }
        if FILTER_W > 5u {
            r = next_spread(r, row, b0, src_w, kh, 5u, c0, dst.z, backward);
        }
        if FILTER_W > 6u {
            r = next_spread(r, row, b0, src_w, kh, 6u, c0, dst.z, backward);
        }
        if FILTER_W > 7u {
            r = next_spread(r, row, b0, src_w, kh, 7u, c0, dst.z, backward);
        }
        acc = r.acc;
    }
    let out_pixel = ((n * dst.x + dh) * dst.y + d0) * dst.z;
    pixels_store(out_pixel, d0, c0, dst, acc.x0);
    if ROW_BLOCKS > 1u {
        pixels_store(out_pixel + 4u * dst.z, d0 + 4u, c0, dst, acc.x1);
    }
    if ROW_BLOCKS > 2u {
        pixels_store(out_pixel + 8u * dst.z, d0 + 8u, c0, dst, acc.x2);
    }
    if ROW_BLOCKS > 3u {
        pixels_store(out_pixel + 12u * dst.z, d0 + 12u, c0, dst, acc.x3);
    }
    if ROW_BLOCKS > 4u {
        pixels_store(out_pixel + 16u * dst.z, d0 + 16u, c0, dst, acc.x4);
    }
    if ROW_BLOCKS > 5u {
        pixels_store(out_pixel + 20u * dst.z, d0 + 20u, c0, dst, acc.x5);
    }
    if ROW_BLOCKS > 6u {
        pixels_store(out_pixel + 24u * dst.z, d0 + 24u, c0, dst, acc.x6);
    }
}

// ---- Pixel-quad filters. A conv with one output channel would fill 1 of the 4 columns of
// every tile above; when its output width is a multiple of 4, src/kernels/conv.rs computes it
// instead as a conv whose 4 output channels are 4 neighbouring output pixels: stride 4 * s_w
// along w, and a filter 3 * s_w taps wider in which channel j is the original filter shifted
// by j * s_w taps. These two kernels convert the filter and fold its gradient back.

struct QuadFilter {
    // The original filter [k_h, k_w, in_c, 1] and the widened one [k_h, k_w + 3 s_w, in_c, 4].
    k_h: u32,
    k_w: u32,
    in_c: u32,
    s_w: u32,
    // fold_pixel_quad_filter_grad: add to filter_out's values.
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> quad: QuadFilter;
@group(0) @binding(1) var<storage, read> filter_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> filter_out: array<f32>;

// filter_out = the widened filter: [kh, kw', ci, j] = filter_in[kh, kw' - j s_w, ci] where
// that tap exists, else 0. One invocation per element of the widened filter.
@compute @workgroup_size(64)
fn widen_filter_to_pixel_quads(@builtin(global_invocation_id) gid: vec3<u32>,
                               @builtin(num_workgroups) groups: vec3<u32>) {
    let wide_w = quad.k_w + 3u * quad.s_w;
    let i = gid.x + gid.y * groups.x * 64u;
    if i >= quad.k_h * wide_w * quad.in_c * 4u {
        return;
    }
    let j = i % 4u;
    let ci = (i / 4u) % quad.in_c;
    let kw_wide = (i / (4u * quad.in_c)) % wide_w;
    let kh = i / (4u * quad.in_c * wide_w);
    let shift = j * quad.s_w;
    var v = 0.0;
    if kw_wide >= shift && kw_wide - shift < quad.k_w {
        v = filter_in[(kh * quad.k_w + kw_wide - shift) * quad.in_c + ci];
    }
    filter_out[i] = v;
}

// filter_out = the original filter's gradient from the widened one's (filter_in):
// [kh, kw, ci] = sum over j of filter_in[kh, kw + j s_w, ci, j] (+ its value when
// accumulating). One invocation per element.
@compute @workgroup_size(64)
fn fold_pixel_quad_filter_grad(@builtin(global_invocation_id) gid: vec3<u32>,
                               @builtin(num_workgroups) groups: vec3<u32>) {
    let wide_w = quad.k_w + 3u * quad.s_w;
    let i = gid.x + gid.y * groups.x * 64u;
    if i >= quad.k_h * quad.k_w * quad.in_c {
        return;
    }
    let ci = i % quad.in_c;
    let kw = (i / quad.in_c) % quad.k_w;
    let kh = i / (quad.in_c * quad.k_w);
    var sum = select(0.0, filter_out[i], quad.accumulate != 0u);
    for (var j = 0u; j < 4u; j++) {
        sum += filter_in[((kh * wide_w + kw + j * quad.s_w) * quad.in_c + ci) * 4u + j];
    }
    filter_out[i] = sum;
}

// ---- Tiled kernels, for discrete GPUs: matmul.wgsl's matmul_tiled with the gathering reads
// above. TILED_WG x TILED_WG invocations stage 8-deep slices of an A tile and a B tile of side
// 8 * TILED_WG in workgroup memory, then each computes 8 x 8 outputs from them (rows and
// columns two blocks of 4, 4 * TILED_WG apart). On lavapipe workgroup memory and barriers only
// add cost (see the portable kernels), so tune.rs times these off CPU adapters only.
//
// A gather tile's rows are dst pixels (n, h, w) rather than images of one pixel, so that a
// batch of any size fills it; each staged quad checks its own tap. For backward data the
// dst pixels are split by phase (h mod s_h, w mod s_w), a dispatch's row groups phase by
// phase: all pixels of a phase take the same taps (d + pad ≡ t mod s), so a strided transposed
// conv never visits a tap only to mask it. Where the output has too few tiles to fill the GPU
// (dcgan's 7x7 maps), the gathered channels are split as in conv_gather_portable (split-k):
// phase by phase, then split by split. A weight-gradient tile is rows of dW by columns,
// summed over the output pixels of its batch slice (Params.row_groups, slice_images).
override TILED_WG: u32 = 16u;
const TILED_K: u32 = 8u;
// Slice kk of the tiles: A's rows at tiled_a[kk * side / 4 ..] and B's columns at
// tiled_b[kk * side / 4 ..], by quads. Sized for the larger tile.
var<workgroup> tiled_a: array<vec4<f32>, 256>;
var<workgroup> tiled_b: array<vec4<f32>, 256>;

// The dst pixels of one phase, first + step * (i, j) for i < pixels.x, j < pixels.y, and the
// taps they take, tap_first + step * (a, b) for a < taps.x, b < taps.y (step 1 forward); and
// the gathered channels of one split that its reduction steps take, first_channel +
// (step % split_channels), from a tap's (step / split_channels), and where the split's partial
// output starts (out_base).
struct Phase {
    first: vec2<u32>,
    step: vec2<u32>,
    pixels: vec2<u32>,
    tap_first: vec2<u32>,
    taps: vec2<u32>,
    dst: vec3<u32>,
    src: vec3<u32>,
    first_channel: u32,
    out_base: u32,
}

fn phase(index: u32, split: u32) -> Phase {
    var f: Phase;
    f.dst = dst_dims();
    f.src = src_dims();
    f.first_channel = split * p.split_channels;
    f.out_base = split * p.split_stride;
    let k = vec2(p.k_h, p.k_w);
    if p.backward_data == 0u {
        f.step = vec2(1u);
        f.pixels = f.dst.xy;
        f.taps = k;
        return f;
    }
    let s = vec2(p.s_h, p.s_w);
    f.first = vec2(index / p.s_w, index % p.s_w);
    f.step = s;
    f.pixels = (max(f.dst.xy, f.first) - f.first + s - 1u) / s;
    f.tap_first = (f.first + vec2(p.pad_top, p.pad_left)) % s;
    f.taps = (max(k, f.tap_first) - f.tap_first + s - 1u) / s;
    return f;
}

// Row m of a phase as (image, h, w).
fn phase_pixel(f: Phase, m: u32) -> vec3<u32> {
    let per_image = f.pixels.x * f.pixels.y;
    let r = m % per_image;
    return vec3(m / per_image, f.first + f.step * vec2(r / f.pixels.y, r % f.pixels.y));
}

// Tap number `tap` of the phase as (kh, kw).
fn phase_tap(f: Phase, tap: u32) -> vec2<u32> {
    return f.tap_first + f.step * vec2(tap / f.taps.y, tap % f.taps.y);
}

// Offset of the src pixel that tap (kh, kw) connects to dst pixel px, or -1 where it lies
// outside the image (or px past the batch). In a phase, d + pad - t divides exactly by s.
fn tap_src_pixel(f: Phase, px: vec3<u32>, tap: vec2<u32>) -> i32 {
    let s = vec2(i32(p.s_h), i32(p.s_w));
    let pad = vec2(i32(p.pad_top), i32(p.pad_left));
    var src = vec2<i32>(px.yz) * s + vec2<i32>(tap) - pad;
    if p.backward_data != 0u {
        src = (vec2<i32>(px.yz) + pad - vec2<i32>(tap)) / s;
    }
    let inside = all(src >= vec2(0)) && all(vec2<u32>(src) < f.src.xy) && px.x < p.batch;
    return select(-1, i32((px.x * f.src.x + u32(src.x)) * f.src.y + u32(src.y)), inside);
}

// The gathered channel of reduction step k (< the reduction's `len`) of the phase's split.
fn step_channel(f: Phase, k: u32) -> u32 {
    return f.first_channel + k % p.split_channels;
}

// Whether reduction step k is live: before `len`, and on a channel of the gathered image.
fn step_live(f: Phase, k: u32, len: u32) -> bool {
    return k < len && step_channel(f, k) < f.src.z;
}

// im2col(src) at row px, reduction steps k0..k0+3 (tap k / split_channels, channel
// step_channel), zero where not live and where a tap lies outside the image.
fn gather_quad(f: Phase, px: vec3<u32>, k0: u32, len: u32) -> vec4<f32> {
    let channels = f.src.z;
    if channels % 4u == 0u {
        // One tap, 4 channels (split_channels is a multiple of 4: a quad is live or dead).
        let pixel = tap_src_pixel(f, px, phase_tap(f, k0 / p.split_channels));
        if pixel < 0 || !step_live(f, k0, len) {
            return vec4(0.0);
        }
        return a_quad(u32(pixel) * channels, step_channel(f, k0), channels);
    }
    var v = vec4(0.0);
    for (var e = 0u; e < 4u; e++) {
        let k = k0 + e;
        let pixel = tap_src_pixel(f, px, phase_tap(f, k / p.split_channels));
        if pixel >= 0 && step_live(f, k, len) {
            v[e] = a_at(u32(pixel) * channels + step_channel(f, k));
        }
    }
    return v;
}

// Backward data's B: W_tap as [y_c, x_c] (reduced along y_c), column ci at reduction steps
// k0..k0+3 (as in gather_quad), zero where not live.
fn adjoint_weight_quad(f: Phase, k0: u32, ci: u32, len: u32) -> vec4<f32> {
    let col = min(ci, p.x_c - 1u);
    if p.y_c % 4u == 0u {
        let k = min(k0, len - 1u);
        let tap = phase_tap(f, k / p.split_channels);
        let row = w_slice(i32(tap.x), i32(tap.y)) + col * p.y_c;
        let quad = b_quad(row, step_channel(f, k), p.y_c);
        return select(vec4(0.0), quad, step_live(f, k0, len));
    }
    var v = vec4(0.0);
    for (var e = 0u; e < 4u; e++) {
        let k = min(k0 + e, len - 1u);
        let tap = phase_tap(f, k / p.split_channels);
        let channel = min(step_channel(f, k), p.y_c - 1u);
        let value = b_at(w_slice(i32(tap.x), i32(tap.y)) + col * p.y_c + channel);
        v[e] = select(0.0, value, step_live(f, k0 + e, len));
    }
    return v;
}

// Stages reduction steps k0..k0+7 of the gather tile at phase rows row0.. and columns j0..
fn stage_gather(f: Phase, row0: u32, j0: u32, k0: u32, len: u32, local: u32) {
    let quads = TILED_WG * 2u;
    for (var q = local; q < TILED_K * quads; q += TILED_WG * TILED_WG) {
        // A: a quad is one row across 4 steps, scattered into 4 slices; so is a backward-data
        // B quad, one column across 4 steps.
        let r = q / (TILED_K / 4u);
        let kq = 4u * (q % (TILED_K / 4u));
        let a = gather_quad(f, phase_pixel(f, row0 + r), k0 + kq, len);
        for (var c = 0u; c < 4u; c++) {
            tiled_a[(kq + c) * quads + r / 4u][r % 4u] = a[c];
        }
        if p.backward_data != 0u {
            let b = adjoint_weight_quad(f, k0 + kq, j0 + r, len);
            for (var c = 0u; c < 4u; c++) {
                tiled_b[(kq + c) * quads + r / 4u][r % 4u] = b[c];
            }
        } else {
            // Forward, step k is row (tap, channel) of W as stored [taps * x_c, y_c].
            let k = k0 + q / quads;
            let kc = min(k, len - 1u);
            let row = kc / p.split_channels * p.x_c + min(step_channel(f, kc), p.x_c - 1u);
            let b = b_quad(row * p.y_c, j0 + 4u * (q % quads), p.y_c);
            tiled_b[q] = select(vec4(0.0), b, step_live(f, k, len));
        }
    }
}

// The 8 x 8 outputs of an invocation: rows i.. and i + half.., columns j.. and j + half..
struct TiledSums {
    acc00: mat4x4<f32>,
    acc01: mat4x4<f32>,
    acc10: mat4x4<f32>,
    acc11: mat4x4<f32>,
}

// One staged slice into the sums.
fn tiled_step(s: TiledSums, lid: vec3<u32>) -> TiledSums {
    let quads = TILED_WG * 2u;
    var t = s;
    for (var kk = 0u; kk < TILED_K; kk++) {
        let a0 = tiled_a[kk * quads + lid.y];
        let a1 = tiled_a[kk * quads + lid.y + TILED_WG];
        let b0 = tiled_b[kk * quads + lid.x];
        let b1 = tiled_b[kk * quads + lid.x + TILED_WG];
        // outer(columns, rows): a block whose column q is row i+q.
        t.acc00 += outer(b0, a0);
        t.acc01 += outer(b1, a0);
        t.acc10 += outer(b0, a1);
        t.acc11 += outer(b1, a1);
    }
    return t;
}

// Writes rows i..i+3 of the phase, columns j..j+3, from an accumulator block.
fn phase_store_block(f: Phase, i: u32, j: u32, rows: u32, v: mat4x4<f32>) {
    for (var r = 0u; r < 4u; r++) {
        if i + r < rows {
            let px = phase_pixel(f, i + r);
            let base = f.out_base + ((px.x * f.dst.x + px.y) * f.dst.y + px.z) * f.dst.z;
            quad_store(base, j, f.dst.z, v[r]);
        }
    }
}

@compute @workgroup_size(TILED_WG, TILED_WG)
fn conv_gather_tiled(@builtin(workgroup_id) wg: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>,
                     @builtin(local_invocation_index) local: u32) {
    let group = row_group(wg, nwg);
    let phases = select(1u, p.s_h * p.s_w, p.backward_data != 0u);
    let split = group / p.row_groups / phases;
    let f = phase(group / p.row_groups % phases, split);
    let rows = p.batch * f.pixels.x * f.pixels.y;
    let half = TILED_WG * 4u;
    let row0 = (group % p.row_groups) * 2u * half;
    // Past this phase's rows, or past the last split (the grid's fold can add some).
    if row0 >= rows || f.first_channel >= f.src.z {
        return;
    }
    let j0 = wg.x * 2u * half;
    let i = row0 + 4u * lid.y;
    let j = j0 + 4u * lid.x;
    let len = f.taps.x * f.taps.y * p.split_channels;
    var s = TiledSums(gather_bias(j, f.dst.z), gather_bias(j + half, f.dst.z),
                      gather_bias(j, f.dst.z), gather_bias(j + half, f.dst.z));
    for (var k0 = 0u; k0 < len; k0 += TILED_K) {
        stage_gather(f, row0, j0, k0, len, local);
        workgroupBarrier();
        s = tiled_step(s, lid);
        workgroupBarrier();
    }
    phase_store_block(f, i, j, rows, s.acc00);
    phase_store_block(f, i, j + half, rows, s.acc01);
    phase_store_block(f, i + half, j, rows, s.acc10);
    phase_store_block(f, i + half, j + half, rows, s.acc11);
}

// Output pixel m of the batch as (image, oh, ow).
fn out_pixel(m: u32) -> vec3<u32> {
    let per_image = p.y_h * p.y_w;
    let r = m % per_image;
    return vec3(m / per_image, r / p.y_w, r % p.y_w);
}

// Stages output pixels m0..m0+7 of a weight-gradient tile at dW rows i0.. and columns j0..:
// A is im2col(x)ᵀ, a quad 4 rows of dW (x_quad) at one pixel, B is dy, zero from m_end on.
fn stage_weight_grad(i0: u32, j0: u32, m0: u32, m_end: u32, local: u32) {
    let quads = TILED_WG * 2u;
    for (var q = local; q < TILED_K * quads; q += TILED_WG * TILED_WG) {
        let m = m0 + q / quads;
        let px = out_pixel(min(m, m_end - 1u));
        tiled_a[q] = x_quad(px, row_quad(i0 + 4u * (q % quads)));
        tiled_b[q] = dy_quad(px, j0 + 4u * (q % quads), select(0u, p.batch, m < m_end));
    }
}

@compute @workgroup_size(TILED_WG, TILED_WG)
fn conv_weight_grad_tiled(@builtin(workgroup_id) wg: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>,
                          @builtin(local_invocation_index) local: u32) {
    let slice = weight_slice(wg, nwg);
    if slice.x >= p.batch {
        return;
    }
    let half = TILED_WG * 4u;
    let i0 = slice.z * 2u * half;
    let j0 = wg.x * 2u * half;
    let i = i0 + 4u * lid.y;
    let j = j0 + 4u * lid.x;
    let per_image = p.y_h * p.y_w;
    let m_end = slice.y * per_image;
    var s = TiledSums(mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>());
    for (var m0 = slice.x * per_image; m0 < m_end; m0 += TILED_K) {
        stage_weight_grad(i0, j0, m0, m_end, local);
        workgroupBarrier();
        s = tiled_step(s, lid);
        workgroupBarrier();
    }
    weight_store_block(slice.x, i, j, s.acc00);
    weight_store_block(slice.x, i, j + half, s.acc01);
    weight_store_block(slice.x, i + half, j, s.acc10);
    weight_store_block(slice.x, i + half, j + half, s.acc11);
}

// ---- Subgroup variants. Everything below needs Features::SUBGROUP: naga validates a whole
// module against the device's capabilities, so the portable pipelines are built from the text
// above this line only (see src/kernels/conv.rs). ----

// The 8 lanes' x quads of a weight-gradient step (lane 2q + h: rows 4h..4h+3 at pixel q) as
// the A blocks of rows 0..3 and 4..7; transposed, because a block's column is one row.
fn weight_blocks(x: array<mat4x4<f32>, 2>) -> array<mat4x4<f32>, 2> {
    return array(transpose(mat4x4(x[0][0], x[0][2], x[1][0], x[1][2])),
                 transpose(mat4x4(x[0][1], x[0][3], x[1][1], x[1][3])));
}

// The 8 lanes' quads as two blocks: lanes 0..3 as columns of the first, 4..7 of the second.
// subgroupBroadcast takes a constant lane, hence the spelled-out lanes.
fn share(x: vec4<f32>) -> array<mat4x4<f32>, 2> {
    return array(mat4x4(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u),
                        subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u)),
                 mat4x4(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u),
                        subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u)));
}

// Gather for subgroups of exactly 8 lanes (one workgroup = one subgroup): a tile of
// TILE_ROWS images x 32 channels of one pixel. Lane L owns channels 4L..4L+3 and loads their
// weights itself; lane r loads images r, 8 + r, ... and shares them, so a step costs 4 + 4
// loads per lane for 512 FMAs at 32 images (5 for 128 at 8). The tap loops' bounds come from
// the workgroup id alone, so every lane runs the same iterations and the broadcasts stay in
// uniform control flow (TILE_ROWS is a constant, so are the ifs on it).
//
// The workgroups (a flat count, folded into y) take the tiles row tile first: neighbouring
// workgroups then read the same columns of W, which matters once W outgrows the cache
// (1.6x at 4x4x256 -> 512, whose W is 13 MB).
@compute @workgroup_size(8)
fn conv_gather_subgroup(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(subgroup_invocation_id) lane: u32) {
    let id = wg.x + wg.y * nwg.x;
    let dst = dst_dims();
    let row_tiles = dst.x * dst.y * ((p.batch + TILE_ROWS - 1u) / TILE_ROWS);
    if id >= row_tiles * ((dst.z + 31u) / 32u) {
        return;
    }
    let t = gather_tile(id % row_tiles);
    let j = (id / row_tiles) * 32u + lane * 4u;
    // Images n0 + 8g + lane, g = 0..3, of which this lane loads the quads.
    let image0 = src_image(t, t.n0 + lane);
    let image1 = src_image(t, t.n0 + 8u + lane);
    let image2 = src_image(t, t.n0 + 16u + lane);
    let image3 = src_image(t, t.n0 + 24u + lane);
    var acc0 = gather_bias(j, t.dst.z);
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    var acc4 = acc0;
    var acc5 = acc0;
    var acc6 = acc0;
    var acc7 = acc0;
    let kw_step = t.tw.step * select(1, 4, PACK_TAPS);
    for (var kh = t.th.first; kh <= t.th.last; kh += t.th.step) {
        for (var kw = t.tw.first; kw <= t.tw.last; kw += kw_step) {
            if PACK_TAPS {
                let taps = tap_quad(t, kh, kw);
                let b = w_taps(taps, j, t.dst.z);
                let a01 = share(a_taps(image0, taps));
                acc0 += b * a01[0];
                acc1 += b * a01[1];
                if TILE_ROWS >= 16u {
                    let a23 = share(a_taps(image1, taps));
                    acc2 += b * a23[0];
                    acc3 += b * a23[1];
                }
                if TILE_ROWS >= 32u {
                    let a45 = share(a_taps(image2, taps));
                    let a67 = share(a_taps(image3, taps));
                    acc4 += b * a45[0];
                    acc5 += b * a45[1];
                    acc6 += b * a67[0];
                    acc7 += b * a67[1];
                }
                continue;
            }
            let pixel = src_pixel(t, kh, kw);
            let slice = w_slice(kh, kw);
            for (var c0 = 0u; c0 < t.src.z; c0 += 4u) {
                let b = w_block(slice, c0, j, t.src.z, t.dst.z);
                let a01 = share(a_quad(image0 + pixel, c0, t.src.z));
                acc0 += b * a01[0];
                acc1 += b * a01[1];
                if TILE_ROWS >= 16u {
                    let a23 = share(a_quad(image1 + pixel, c0, t.src.z));
                    acc2 += b * a23[0];
                    acc3 += b * a23[1];
                }
                if TILE_ROWS >= 32u {
                    let a45 = share(a_quad(image2 + pixel, c0, t.src.z));
                    let a67 = share(a_quad(image3 + pixel, c0, t.src.z));
                    acc4 += b * a45[0];
                    acc5 += b * a45[1];
                    acc6 += b * a67[0];
                    acc7 += b * a67[1];
                }
            }
        }
    }
    gather_store_block(t, t.n0, j, acc0);
    gather_store_block(t, t.n0 + 4u, j, acc1);
    if TILE_ROWS >= 16u {
        gather_store_block(t, t.n0 + 8u, j, acc2);
        gather_store_block(t, t.n0 + 12u, j, acc3);
    }
    if TILE_ROWS >= 32u {
        gather_store_block(t, t.n0 + 16u, j, acc4);
        gather_store_block(t, t.n0 + 20u, j, acc5);
        gather_store_block(t, t.n0 + 24u, j, acc6);
        gather_store_block(t, t.n0 + 28u, j, acc7);
    }
}

// Weight gradient for subgroups of exactly 8 lanes, 8 subgroups per workgroup: each subgroup
// computes TILE_ROWS rows x 32 columns of dW. Lane L owns columns 4L..4L+3 and loads their dy
// values; lane 2q + h loads x for rows 8g + 4h..8g + 4h + 3 (g = 0..3) at the step's pixel q,
// and the quads are shared: 8 loads per lane per step for 512 FMAs at 32 rows. The walks differ
// between subgroups but not within one, so the broadcasts stay in uniform control flow.
@compute @workgroup_size(64)
fn conv_weight_grad_subgroup(@builtin(workgroup_id) wg: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(subgroup_id) sg: u32,
                             @builtin(subgroup_invocation_id) lane: u32) {
    let slice = weight_slice(wg, nwg);
    let i0 = (slice.z * 8u + sg) * TILE_ROWS;
    let j = wg.x * 32u + lane * 4u;
    let rect = weight_rect(i0, TILE_ROWS);
    let half = 4u * (lane % 2u);
    let rq0 = row_quad(i0 + half);
    let rq1 = row_quad(i0 + 8u + half);
    let rq2 = row_quad(i0 + 16u + half);
    let rq3 = row_quad(i0 + 24u + half);
    var acc0 = mat4x4<f32>();
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    var acc4 = acc0;
    var acc5 = acc0;
    var acc6 = acc0;
    var acc7 = acc0;
    var m = first_pixel(rect, slice.x, slice.y);
    while m.x < slice.y {
        let ms = step_pixels(m, rect);
        let b = dy_block(ms, j, slice.y);
        // This lane's pixel, ms[lane / 2] without indexing an array by a lane-varying
        // value (which llvmpipe does one lane at a time).
        let q = lane / 2u;
        let mine = select(select(ms[0], ms[1], q == 1u), select(ms[2], ms[3], q == 3u),
                          q >= 2u);
        let x01 = weight_blocks(share(x_quad(mine, rq0)));
        acc0 += b * x01[0];
        acc1 += b * x01[1];
        if TILE_ROWS >= 16u {
            let x23 = weight_blocks(share(x_quad(mine, rq1)));
            acc2 += b * x23[0];
            acc3 += b * x23[1];
        }
        if TILE_ROWS >= 32u {
            let x45 = weight_blocks(share(x_quad(mine, rq2)));
            let x67 = weight_blocks(share(x_quad(mine, rq3)));
            acc4 += b * x45[0];
            acc5 += b * x45[1];
            acc6 += b * x67[0];
            acc7 += b * x67[1];
        }
        m = next_pixel(ms[3], rect);
    }
    weight_store_block(slice.x, i0, j, acc0);
    weight_store_block(slice.x, i0 + 4u, j, acc1);
    if TILE_ROWS >= 16u {
        weight_store_block(slice.x, i0 + 8u, j, acc2);
        weight_store_block(slice.x, i0 + 12u, j, acc3);
    }
    if TILE_ROWS >= 32u {
        weight_store_block(slice.x, i0 + 16u, j, acc4);
        weight_store_block(slice.x, i0 + 20u, j, acc5);
        weight_store_block(slice.x, i0 + 24u, j, acc6);
        weight_store_block(slice.x, i0 + 28u, j, acc7);
    }
}
