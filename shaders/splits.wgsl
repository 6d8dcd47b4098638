// Sums of split partial outputs: a conv gather cut into splits along its reduction (ranges of
// its gathered channels, each summed by its own invocations, where a discrete GPU wants more
// invocations than the outputs give) writes one partial output per split; this adds them up
// and stores C = act(Σ partials + bias), or the sum times act' (GRADIENT), through
// store.wgsl's stores, as the unsplit kernel would have.

struct Params {
    // C is [rows, cols]; split s's partial C starts at s * rows * cols.
    rows: u32,
    cols: u32,
    splits: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
// C by quads (store.wgsl): element e is c[e / 4][e % 4].
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
// The bias (Params.has_bias), or with GRADIENT the activation output, shaped as C.
@group(0) @binding(3) var<storage, read> epilogue: array<f32>;
// The activation output mirrored in a texture, read where VEC_EPILOGUE.
@group(0) @binding(4) var e4: texture_storage_2d<rgba32float, read>;

// One invocation per quad of a row of C.
@compute @workgroup_size(64)
fn sum_splits(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>) {
    let quads = (p.cols + 3u) / 4u;
    let index = gid.x + gid.y * groups.x * 64u;
    if index >= p.rows * quads {
        return;
    }
    let base = index / quads * p.cols;
    let j = 4u * (index % quads);
    let len = p.rows * p.cols;
    var v = vec4(0.0);
    for (var q = 0u; q < 4u; q++) {
        if j + q < p.cols {
            if p.has_bias != 0u {
                v[q] = epilogue[j + q];
            }
            for (var s = 0u; s < p.splits; s++) {
                v[q] += partials[s * len + base + j + q];
            }
        }
    }
    store_quad(base, j, p.cols, fused_quad(base + j, v));
}
