// A batch of images gathered from the dataset kept on the GPU as bytes, four to a u32 word
// (little-endian), and mapped to the pixel range: out = byte * scale + offset. A dataset larger
// than one storage binding is split into shards of whole rows; one dispatch per shard writes the
// rows whose index falls in it and leaves the others to the other shards' dispatches.

struct Params {
    count: u32,
    row_len: u32,
    scale: f32,
    offset: f32,
    first_row: u32,
    rows: u32,
}

@group(0) @binding(0) var<storage, read> images: array<u32>;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
// By quads: element e is out[e / 4][e % 4].
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;

// Rows are whole words (row_len % 4 == 0): each thread's four pixels are one word, stored as
// one vec4, which lavapipe writes in one loop over the SIMD lanes where four scalar stores
// take four (and a loop over a variable count of pixels runs masked).
override WHOLE_WORDS: bool = false;

// One thread per four consecutive pixels of an output row, so that one word load (two when
// rows are not whole words and the four straddle a boundary) serves four outputs.
@compute @workgroup_size(WG)
fn gather_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let q = gid.x + gid.y * groups.x * WG;
    let quads_per_row = (p.row_len + 3u) / 4u;
    let i = q / quads_per_row;
    if i >= p.count {
        return;
    }
    // Unsigned wrap-around sends rows before the shard past its end as well.
    let row = indices[i] - p.first_row;
    if row >= p.rows {
        return;
    }
    let j = (q - i * quads_per_row) * 4u;
    // Byte address of pixel j of the chosen image, and where it sits in its word.
    let start = row * p.row_len + j;
    let base = i * p.row_len + j;
    if WHOLE_WORDS {
        // unpack4x8unorm gives byte / 255.
        out[base / 4u] = unpack4x8unorm(images[start / 4u]) * (255.0 * p.scale) + p.offset;
        return;
    }
    let n = min(4u, p.row_len - j);
    let shift = (start & 3u) * 8u;
    var bytes = images[start >> 2u] >> shift;
    if shift + 8u * n > 32u {
        bytes |= images[(start >> 2u) + 1u] << (32u - shift);
    }
    for (var b = 0u; b < n; b++) {
        let e = base + b;
        out[e / 4u][e % 4u] = f32((bytes >> (8u * b)) & 0xFFu) * p.scale + p.offset;
    }
}

// ---- Labels: one byte per row of the dataset (packed four to a word as above), as u32.

struct LabelParams {
    count: u32,
}

@group(0) @binding(2) var<storage, read_write> out_labels: array<u32>;
@group(0) @binding(3) var<uniform> lp: LabelParams;

// out_labels[i] = byte indices[i] of `images` (here the label bytes), one thread per label.
@compute @workgroup_size(WG)
fn gather_labels(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i >= lp.count {
        return;
    }
    let at = indices[i];
    out_labels[i] = (images[at >> 2u] >> ((at & 3u) * 8u)) & 0xFFu;
}
