// Matrix multiply family: C[m,n] = op(A)·op(B), plus bias[n] on every row when HAS_BIAS,
// through the activation ACT (activate.wgsl, before this file) when the layer has one, or
// times ACT's derivative when C is the gradient at an activation's output (GRADIENT), plus C's
// own values when ACCUMULATE (a weight gradient summed over chunks of a batch).
// A is stored [m,k] row-major, or [k,m] when TRANS_A; B is stored [k,n], or [n,k] when TRANS_B.
//
// Written for lavapipe (llvmpipe), where every storage-buffer load is a scalar loop over the
// 8 SIMD lanes and costs tens of times an FMA, while subgroupBroadcast is a register shuffle.
// So both kernels block registers to do many FMAs per load, read 4 consecutive floats per load
// (one texel fetch when the stored row length allows it), and the subgroup kernel loads every element
// once per subgroup and shares it with subgroupBroadcast. Shared-memory tiling would only add
// loads (workgroup memory is scalarised the same way).
//
// The k loop walks k in steps of 4; indices past the matrix are clamped to its last row or
// column, and the B values for k past the end are zeroed, so any m, n, k >= 1 work.

struct Params {
    m: u32,
    n: u32,
    k: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
// The stored row length of A / B is a multiple of 4: read 4 floats at once from a4 / b4, the
// same floats mirrored in an rgba32float texture (see texel). One texel load costs lavapipe
// about what one scalar storage load does, so this makes the kernels several times faster
// than reading the quads from the buffers. The textures are bound as read-only storage
// textures: llvmpipe loads those in about a third of the time of a sampled texture's fetch,
// which also walks the mip-level tables.
override VEC_A: bool = false;
override VEC_B: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var a4: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var b4: texture_storage_2d<rgba32float, read>;
// The bias when HAS_BIAS, or with GRADIENT the output of the activation whose gradient C is,
// shaped as C (never both: a gradient has no bias). One binding for the two keeps the kernel
// within 4 storage buffers, downlevel devices' limit.
@group(0) @binding(5) var<storage, read> epilogue: array<f32>;
// C by quads (store.wgsl): element e is c[e / 4][e % 4].
@group(0) @binding(6) var<storage, read_write> c: array<vec4<f32>>;
// The activation output again, mirrored in a texture, read where VEC_EPILOGUE.
@group(0) @binding(7) var e4: texture_storage_2d<rgba32float, read>;
// The *_column_sums entry points: op(B)'s column sums, dy's for a weight gradient xᵀ·dy, which
// is the bias gradient (plus its values when ACCUMULATE). A fifth storage buffer, so
// only where the device allows it: the other entry points do not use it.
@group(0) @binding(8) var<storage, read_write> column_sums: array<f32>;

// Quad q of a and of b from their mirrors; with quad views (src/gpu.rs's
// Shader::with_quad_views), from the buffers themselves as vec4s. The only reads of a4 and b4.
fn a4_quad(q: u32) -> vec4<f32> {
    return textureLoad(a4, texel(q));
}

fn b4_quad(q: u32) -> vec4<f32> {
    return textureLoad(b4, texel(q));
}

// Elements [r, c0..c0+3] of A as stored, with the indices clamped into the matrix.
fn a_quad(r: u32, c0: u32) -> vec4<f32> {
    let rows = select(p.m, p.k, TRANS_A);
    let cols = select(p.k, p.m, TRANS_A);
    let base = min(r, rows - 1u) * cols;
    if VEC_A {
        // cols % 4 == 0 and c0 % 4 == 0: the quad never straddles two rows.
        return a4_quad((base + min(c0, cols - 4u)) / 4u);
    }
    let last = cols - 1u;
    return vec4(a[base + min(c0, last)], a[base + min(c0 + 1u, last)],
                a[base + min(c0 + 2u, last)], a[base + min(c0 + 3u, last)]);
}

// Elements [r, c0..c0+3] of B as stored, with the indices clamped into the matrix.
fn b_quad(r: u32, c0: u32) -> vec4<f32> {
    let rows = select(p.k, p.n, TRANS_B);
    let cols = select(p.n, p.k, TRANS_B);
    let base = min(r, rows - 1u) * cols;
    if VEC_B {
        return b4_quad((base + min(c0, cols - 4u)) / 4u);
    }
    let last = cols - 1u;
    return vec4(b[base + min(c0, last)], b[base + min(c0 + 1u, last)],
                b[base + min(c0 + 2u, last)], b[base + min(c0 + 3u, last)]);
}

// Rows i..i+3 of op(A) at k0..k0+3 as a matrix whose column q is op(A)[i+q, k0..k0+3]. Four
// loads either way.
fn a_block(i: u32, k0: u32) -> mat4x4<f32> {
    if TRANS_A {
        // Stored [k,m]: each quad is one k across four rows; transposing is free in registers.
        return transpose(mat4x4(a_quad(k0, i), a_quad(k0 + 1u, i), a_quad(k0 + 2u, i),
                                a_quad(k0 + 3u, i)));
    }
    return mat4x4(a_quad(i, k0), a_quad(i + 1u, k0), a_quad(i + 2u, k0), a_quad(i + 3u, k0));
}

// op(B) at k0..k0+3, columns j..j+3, as a matrix whose column q is op(B)[k0+q, j..j+3], zero
// where k0+q >= k so that a partial last step adds nothing. With a block of A from a_block,
// `b_block(k0, j) * a_block(i, k0)` is C[i..i+3, j..j+3]'s share of k0..k0+3, by columns.
fn b_block(k0: u32, j: u32) -> mat4x4<f32> {
    var rows: mat4x4<f32>;
    if TRANS_B {
        rows = transpose(mat4x4(b_quad(j, k0), b_quad(j + 1u, k0), b_quad(j + 2u, k0),
                                b_quad(j + 3u, k0)));
    } else {
        rows = mat4x4(b_quad(k0, j), b_quad(k0 + 1u, j), b_quad(k0 + 2u, j), b_quad(k0 + 3u, j));
    }
    let live = vec4<u32>(k0) + vec4(0u, 1u, 2u, 3u) < vec4(p.k);
    return mat4x4(select(vec4(0.0), rows[0], live.x), select(vec4(0.0), rows[1], live.y),
                  select(vec4(0.0), rows[2], live.z), select(vec4(0.0), rows[3], live.w));
}

// The accumulators' starting value for columns j..j+3: their bias, or zero. Adding the bias
// here rather than in store_row keeps the epilogue short: with both a bias and an activation
// there, llvmpipe ran the whole kernel at half speed.
fn bias_quad(j: u32) -> vec4<f32> {
    if !HAS_BIAS {
        return vec4(0.0);
    }
    let last = p.n - 1u;
    return vec4(epilogue[min(j, last)], epilogue[min(j + 1u, last)],
                epilogue[min(j + 2u, last)], epilogue[min(j + 3u, last)]);
}

// Writes act(C[i, j..j+3]), or with GRADIENT those values times act' at the activation output
// in `epilogue` (plus C's values when ACCUMULATE), skipping what lies outside the matrix.
fn store_row(i: u32, j: u32, v: vec4<f32>) {
    if i < p.m {
        store_quad(i * p.n, j, p.n, fused_quad(i * p.n + j, v));
    }
}

// Writes op(B)'s column sums j..j+3 (plus their values when accumulating), as far as n.
fn store_column_sums(j: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if j + q < p.n {
            var sum = v[q];
            if ACCUMULATE {
                sum += column_sums[j + q];
            }
            column_sums[j + q] = sum;
        }
    }
}

// The sums over k0..k0+3 of op(B)'s columns j..j+3 in a b_block.
fn b_block_sums(b: mat4x4<f32>) -> vec4<f32> {
    return b[0] + b[1] + b[2] + b[3];
}

// Writes C[i..i+3, j..j+3] from a block whose column q is row i+q, as store_row does.
fn store_block(i: u32, j: u32, v: mat4x4<f32>) {
    store_row(i, j, v[0]);
    store_row(i + 1u, j, v[1]);
    store_row(i + 2u, j, v[2]);
    store_row(i + 3u, j, v[3]);
}

// Both kernels keep their accumulators in separately named 4x4 blocks rather than an array
// indexed in a loop: llvmpipe kept such an array in memory and ran at half the speed.

// Portable variant (no subgroups): each invocation computes 8 rows x 4 columns of C from its own
// loads, 12 per k step for 128 FMAs. 16 rows was no faster at the presets' shapes and halves
// the number of workgroups, which small batches need to fill a GPU.
// Returns the sums of op(B)'s columns j..j+3, for matmul_portable_column_sums.
fn portable_tile(gid: vec3<u32>) -> vec4<f32> {
    let i0 = gid.y * 8u;
    let j = gid.x * 4u;
    let start = bias_quad(j);
    var acc0 = mat4x4(start, start, start, start);
    var acc1 = acc0;
    var sums = vec4(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let b = b_block(k0, j);
        acc0 += b * a_block(i0, k0);
        acc1 += b * a_block(i0 + 4u, k0);
        sums += b_block_sums(b);
    }
    store_block(i0, j, acc0);
    store_block(i0 + 4u, j, acc1);
    return sums;
}

@compute @workgroup_size(8, 8)
fn matmul_portable(@builtin(global_invocation_id) gid: vec3<u32>) {
    _ = portable_tile(gid);
}

// The same, and the first row of tiles writes op(B)'s column sums.
@compute @workgroup_size(8, 8)
fn matmul_portable_column_sums(@builtin(global_invocation_id) gid: vec3<u32>) {
    let sums = portable_tile(gid);
    if gid.y == 0u {
        store_column_sums(gid.x * 4u, sums);
    }
}

// Matrix-vector variant for n = 1 (the host then stores B as one row, TRANS_B) with A stored
// [m,k]: each invocation computes 4 rows of C, a dot product each, walking k in quads. The
// tiled kernels would leave 31 of every 32 columns of a tile idle on the discriminators'
// one-logit layers (1.4-3x faster than them there).
const MATVEC_WG: u32 = 64u;

@compute @workgroup_size(MATVEC_WG)
fn matvec(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>) {
    let i0 = (gid.x + gid.y * groups.x * MATVEC_WG) * 4u;
    if i0 >= p.m {
        return;
    }
    var acc = vec4(bias_quad(0u).x);
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let live = vec4<u32>(k0) + vec4(0u, 1u, 2u, 3u) < vec4(p.k);
        // a_block's column q holds row i0 + q at k0..k0+3, so b * block gives the 4 rows' sums.
        acc += select(vec4(0.0), b_quad(0u, k0), live) * a_block(i0, k0);
    }
    store_matvec_rows(i0, acc);
}

// Rows i0..i0+3 of a matrix-vector product.
fn store_matvec_rows(i0: u32, v: vec4<f32>) {
    store_row(i0, 0u, vec4(v.x));
    store_row(i0 + 1u, 0u, vec4(v.y));
    store_row(i0 + 2u, 0u, vec4(v.z));
    store_row(i0 + 3u, 0u, vec4(v.w));
}

// The same with each dot product split across a workgroup, for discrete GPUs (the slices
// family's many slices): its MATVEC_WG invocations share 4 rows of C, each summing every
// MATVEC_WG-th quad of k, and add their sums up in workgroup memory. One invocation walking all
// of k waits on one load after another with most of the GPU idle: 0.98 ms for dcgan-upsample's
// 512 x 8192 on an H200.
var<workgroup> matvec_sums: array<vec4<f32>, MATVEC_WG>;

@compute @workgroup_size(MATVEC_WG)
fn matvec_split(@builtin(workgroup_id) wg: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lane: u32) {
    let i0 = (wg.x + wg.y * groups.x) * 4u;
    if i0 >= p.m {
        return;
    }
    var acc = vec4(0.0);
    for (var k0 = 4u * lane; k0 < p.k; k0 += 4u * MATVEC_WG) {
        let live = vec4<u32>(k0) + vec4(0u, 1u, 2u, 3u) < vec4(p.k);
        acc += select(vec4(0.0), b_quad(0u, k0), live) * a_block(i0, k0);
    }
    matvec_sums[lane] = acc;
    for (var half = MATVEC_WG / 2u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if lane < half {
            matvec_sums[lane] += matvec_sums[lane + half];
        }
    }
    if lane == 0u {
        store_matvec_rows(i0, matvec_sums[0] + vec4(bias_quad(0u).x));
    }
}

// Workgroup-memory variant, for discrete GPUs, where storage loads are wide and cached and
// workgroup memory is a fast on-chip scratchpad (the opposite of lavapipe): TILED_WG x
// TILED_WG invocations stage an 8-deep slice of op(A)'s and op(B)'s tiles of side
// 8 * TILED_WG in workgroup memory, then each computes 8 x 8 of C from it, 4 vec4 reads for
// 64 FMAs per k. Its rows (and columns) are two blocks of 4, 4 * TILED_WG apart, so that the
// invocations of a row of the workgroup read consecutive vec4s. TILED_WG is 16 (tiles of
// 128) where the grid has workgroups enough to fill a large GPU, else 8 (tiles of 64).
override TILED_WG: u32 = 16u;
// 16-deep slices took 0.93-1.12x the time of 8-deep ones on an H200 (1024- and 4096-sided
// products): no better, and twice the workgroup memory.
const TILED_K: u32 = 8u;
// Slice kk of the tiles: op(A)[i0..i0+side, k0+kk] at tiled_a[kk * side / 4 ..], by quads
// of rows; op(B)[k0+kk, j0..j0+side] at tiled_b[kk * side / 4 ..], by quads of columns.
// Sized for the larger tile.
var<workgroup> tiled_a: array<vec4<f32>, 256>;
var<workgroup> tiled_b: array<vec4<f32>, 256>;

// Outer product as a block whose column q is row i+q: a holds rows i..i+3, b columns j..j+3.
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(b * a.x, b * a.y, b * a.z, b * a.w);
}

// Stages op(A)[i0.., k0..k0+7] and op(B)[k0..k0+7, j0..] (zero past k) in workgroup memory,
// each invocation loading quads `local`, `local` + invocations, ...
fn stage_tiles(i0: u32, j0: u32, k0: u32, local: u32) {
    let quads = TILED_WG * 2u;  // quads along a tile's side
    let threads = TILED_WG * TILED_WG;
    for (var q = local; q < TILED_K * quads; q += threads) {
        if TRANS_A {
            // Stored [k,m]: a quad is one k across 4 rows, as staged.
            let kk = q / quads;
            tiled_a[q] = a_quad(k0 + kk, i0 + 4u * (q % quads));
        } else {
            // Stored [m,k]: a quad is one row across 4 k, scattered into 4 slices.
            let r = q / (TILED_K / 4u);
            let kq = 4u * (q % (TILED_K / 4u));
            let v = a_quad(i0 + r, k0 + kq);
            for (var c = 0u; c < 4u; c++) {
                tiled_a[(kq + c) * quads + r / 4u][r % 4u] = v[c];
            }
        }
        if TRANS_B {
            let col = q / (TILED_K / 4u);
            let kq = 4u * (q % (TILED_K / 4u));
            let live = vec4<u32>(k0 + kq) + vec4(0u, 1u, 2u, 3u) < vec4(p.k);
            let v = select(vec4(0.0), b_quad(j0 + col, k0 + kq), live);
            for (var c = 0u; c < 4u; c++) {
                tiled_b[(kq + c) * quads + col / 4u][col % 4u] = v[c];
            }
        } else {
            let kk = q / quads;
            tiled_b[q] = select(vec4(0.0), b_quad(k0 + kk, j0 + 4u * (q % quads)), k0 + kk < p.k);
        }
    }
}

// Returns the sums of op(B)'s columns j..j+3 and j+half..j+half+3, for the column-sums entry.
fn tiled_tile(wg: vec3<u32>, lid: vec3<u32>, local: u32) -> array<vec4<f32>, 2> {
    let quads = TILED_WG * 2u;
    let half = TILED_WG * 4u;
    let i0 = wg.y * 2u * half;
    let j0 = wg.x * 2u * half;
    let i = i0 + 4u * lid.y;
    let j = j0 + 4u * lid.x;
    let start0 = bias_quad(j);
    let start1 = bias_quad(j + half);
    var acc00 = mat4x4(start0, start0, start0, start0);
    var acc01 = mat4x4(start1, start1, start1, start1);
    var acc10 = acc00;
    var acc11 = acc01;
    var sums0 = vec4(0.0);
    var sums1 = vec4(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TILED_K) {
        stage_tiles(i0, j0, k0, local);
        workgroupBarrier();
        for (var kk = 0u; kk < TILED_K; kk++) {
            let a0 = tiled_a[kk * quads + lid.y];
            let a1 = tiled_a[kk * quads + lid.y + TILED_WG];
            let b0 = tiled_b[kk * quads + lid.x];
            let b1 = tiled_b[kk * quads + lid.x + TILED_WG];
            acc00 += outer(a0, b0);
            acc01 += outer(a0, b1);
            acc10 += outer(a1, b0);
            acc11 += outer(a1, b1);
            sums0 += b0;
            sums1 += b1;
        }
        workgroupBarrier();
    }
    store_block(i, j, acc00);
    store_block(i, j + half, acc01);
    store_block(i + half, j, acc10);
    store_block(i + half, j + half, acc11);
    return array(sums0, sums1);
}

@compute @workgroup_size(TILED_WG, TILED_WG)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) local: u32) {
    _ = tiled_tile(wg, lid, local);
}

// The same, and the first row of tiles writes op(B)'s column sums.
@compute @workgroup_size(TILED_WG, TILED_WG)
fn matmul_tiled_column_sums(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(local_invocation_id) lid: vec3<u32>,
                            @builtin(local_invocation_index) local: u32) {
    let sums = tiled_tile(wg, lid, local);
    if wg.y == 0u && lid.y == 0u {
        let j = wg.x * 8u * TILED_WG + 4u * lid.x;
        store_column_sums(j, sums[0]);
        store_column_sums(j + 4u * TILED_WG, sums[1]);
    }
}

// ---- Subgroup variant. Everything below needs Features::SUBGROUP: naga validates a whole module
// against the device's capabilities, so the portable pipeline is built from the text above
// this line only (see src/kernels/matmul.rs). ----

// This lane's share of the 8 x 4 block of op(A) at rows i0..i0+7, k0..k0+3: one load.
fn a_lane_quad(i0: u32, k0: u32, lane: u32) -> vec4<f32> {
    if TRANS_A {
        // Stored [k,m]: lane 2q + h holds k0+q for rows i0+4h..i0+4h+3.
        return a_quad(k0 + lane / 2u, i0 + 4u * (lane % 2u));
    }
    // Stored [m,k]: lane r holds row i0+r for k0..k0+3.
    return a_quad(i0 + lane, k0);
}

// Gathers the subgroup's 8 x 4 block of op(A) from every lane's a_lane_quad, as two a_blocks:
// rows i0..i0+3 and i0+4..i0+7. subgroupBroadcast takes a constant lane, hence the spelled-out
// lanes.
fn share_a_blocks(x: vec4<f32>) -> array<mat4x4<f32>, 2> {
    let l0 = subgroupBroadcast(x, 0u);
    let l1 = subgroupBroadcast(x, 1u);
    let l2 = subgroupBroadcast(x, 2u);
    let l3 = subgroupBroadcast(x, 3u);
    let l4 = subgroupBroadcast(x, 4u);
    let l5 = subgroupBroadcast(x, 5u);
    let l6 = subgroupBroadcast(x, 6u);
    let l7 = subgroupBroadcast(x, 7u);
    if TRANS_A {
        return array(transpose(mat4x4(l0, l2, l4, l6)), transpose(mat4x4(l1, l3, l5, l7)));
    }
    return array(mat4x4(l0, l1, l2, l3), mat4x4(l4, l5, l6, l7));
}

// Fast variant for subgroups of exactly 8 lanes (one workgroup = one subgroup): a tile of
// 32 rows x 32 columns of C. Lane L owns columns 4L..4L+3 and loads their B values itself;
// each A value is loaded by one lane and broadcast to the rest, so a k step costs 8 loads
// per lane for 512 FMAs. 32 rows measured 1.3-1.7x faster than 8 on the presets' shapes;
// 64 rows was no faster.
// Returns the sums of op(B)'s columns j..j+3, for matmul_subgroup_column_sums.
fn subgroup_tile(wg: vec3<u32>, lane: u32) -> vec4<f32> {
    let i0 = wg.y * 32u;
    let j = wg.x * 32u + lane * 4u;
    let start = bias_quad(j);
    var acc0 = mat4x4(start, start, start, start);
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    var acc4 = acc0;
    var acc5 = acc0;
    var acc6 = acc0;
    var acc7 = acc0;
    var sums = vec4(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let b = b_block(k0, j);
        sums += b_block_sums(b);
        let a01 = share_a_blocks(a_lane_quad(i0, k0, lane));
        let a23 = share_a_blocks(a_lane_quad(i0 + 8u, k0, lane));
        let a45 = share_a_blocks(a_lane_quad(i0 + 16u, k0, lane));
        let a67 = share_a_blocks(a_lane_quad(i0 + 24u, k0, lane));
        acc0 += b * a01[0];
        acc1 += b * a01[1];
        acc2 += b * a23[0];
        acc3 += b * a23[1];
        acc4 += b * a45[0];
        acc5 += b * a45[1];
        acc6 += b * a67[0];
        acc7 += b * a67[1];
    }
    store_block(i0, j, acc0);
    store_block(i0 + 4u, j, acc1);
    store_block(i0 + 8u, j, acc2);
    store_block(i0 + 12u, j, acc3);
    store_block(i0 + 16u, j, acc4);
    store_block(i0 + 20u, j, acc5);
    store_block(i0 + 24u, j, acc6);
    store_block(i0 + 28u, j, acc7);
    return sums;
}

@compute @workgroup_size(8)
fn matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(subgroup_invocation_id) lane: u32) {
    _ = subgroup_tile(wg, lane);
}

// The same, and the first row of tiles writes op(B)'s column sums.
@compute @workgroup_size(8)
fn matmul_subgroup_column_sums(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(subgroup_invocation_id) lane: u32) {
    let sums = subgroup_tile(wg, lane);
    if wg.y == 0u {
        store_column_sums(wg.x * 32u + lane * 4u, sums);
    }
}
