// Matrix multiply family: C[m,n] = op(A)·op(B), plus bias[n] on every row when HAS_BIAS.
// A is stored [m,k] row-major, or [k,m] when TRANS_A; B is stored [k,n], or [n,k] when TRANS_B.
//
// Written for lavapipe (llvmpipe), where every storage-buffer load is a scalar loop over the
// 8 SIMD lanes and costs ~100x an FMA, while subgroupBroadcast is a register shuffle. So both
// kernels block registers to do many FMAs per load, read 4 consecutive floats per load (one
// vec4 when the stored row length allows it), and the subgroup kernel loads every element once
// per subgroup and shares it with subgroupBroadcast. Shared-memory tiling would only add loads.
//
// The k loop walks k in steps of 4; indices past the matrix are clamped to its last row or
// column, and the B values for k past the end are zeroed, so any m, n, k >= 1 work.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
// The stored row length of A / B is a multiple of 4: read 4 floats at once through a4 / b4
// (the same buffer bound a second time as vec4), about 2.5x cheaper than 4 scalar loads.
override VEC_A: bool = false;
override VEC_B: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;

// Elements [r, c0..c0+3] of A as stored, with the indices clamped into the matrix.
fn a_quad(r: u32, c0: u32) -> vec4<f32> {
    let rows = select(p.m, p.k, TRANS_A);
    let cols = select(p.k, p.m, TRANS_A);
    let base = min(r, rows - 1u) * cols;
    if VEC_A {
        // cols % 4 == 0 and c0 % 4 == 0: the quad never straddles two rows.
        return a4[(base + min(c0, cols - 4u)) / 4u];
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
        return b4[(base + min(c0, cols - 4u)) / 4u];
    }
    let last = cols - 1u;
    return vec4(b[base + min(c0, last)], b[base + min(c0 + 1u, last)],
                b[base + min(c0 + 2u, last)], b[base + min(c0 + 3u, last)]);
}

// Rows i..i+3 of op(A) at k0..k0+3: element q holds op(A)[i+q, k0..k0+3]. Four loads either way.
fn a_rows4(i: u32, k0: u32) -> array<vec4<f32>, 4> {
    if TRANS_A {
        // Stored [k,m]: each quad is one k across four rows; transposing is free in registers.
        let t = transpose(mat4x4(a_quad(k0, i), a_quad(k0 + 1u, i), a_quad(k0 + 2u, i),
                                 a_quad(k0 + 3u, i)));
        return array(t[0], t[1], t[2], t[3]);
    }
    return array(a_quad(i, k0), a_quad(i + 1u, k0), a_quad(i + 2u, k0), a_quad(i + 3u, k0));
}

// op(B)[k0+q, j..j+3] for q = 0..3, zero where k0+q >= k so that a partial last step adds nothing.
fn b_rows4(k0: u32, j: u32) -> array<vec4<f32>, 4> {
    var rows: array<vec4<f32>, 4>;
    if TRANS_B {
        let t = transpose(mat4x4(b_quad(j, k0), b_quad(j + 1u, k0), b_quad(j + 2u, k0),
                                 b_quad(j + 3u, k0)));
        rows = array(t[0], t[1], t[2], t[3]);
    } else {
        rows = array(b_quad(k0, j), b_quad(k0 + 1u, j), b_quad(k0 + 2u, j), b_quad(k0 + 3u, j));
    }
    for (var q = 0u; q < 4u; q++) {
        rows[q] = select(vec4(0.0), rows[q], k0 + q < p.k);
    }
    return rows;
}

// acc + Σ_q arow[q] · brows[q]: one row of C (4 columns) over 4 steps of k.
fn fma_row(acc: vec4<f32>, arow: vec4<f32>, brows: array<vec4<f32>, 4>) -> vec4<f32> {
    var s = fma(vec4(arow.x), brows[0], acc);
    s = fma(vec4(arow.y), brows[1], s);
    s = fma(vec4(arow.z), brows[2], s);
    return fma(vec4(arow.w), brows[3], s);
}

// Writes C[i, j..j+3] (plus bias), skipping what lies outside the matrix.
fn store_row(i: u32, j: u32, v: vec4<f32>) {
    if i >= p.m {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        if j + q < p.n {
            var x = v[q];
            if HAS_BIAS {
                x += bias[j + q];
            }
            c[i * p.n + j + q] = x;
        }
    }
}

// Rows of C per invocation in matmul_portable.
const LANE_ROWS: u32 = 8u;

// Portable variant (no subgroups): each invocation computes LANE_ROWS rows x 4 columns of C
// from its own loads.
@compute @workgroup_size(8, 8)
fn matmul_portable(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * LANE_ROWS;
    let j = gid.x * 4u;
    var acc: array<vec4<f32>, LANE_ROWS>;
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let brows = b_rows4(k0, j);
        for (var g = 0u; g < LANE_ROWS / 4u; g++) {
            let r = a_rows4(i0 + 4u * g, k0);
            for (var q = 0u; q < 4u; q++) {
                acc[4u * g + q] = fma_row(acc[4u * g + q], r[q], brows);
            }
        }
    }
    for (var r = 0u; r < LANE_ROWS; r++) {
        store_row(i0 + r, j, acc[r]);
    }
}

// ---- Subgroup variant. Everything below needs Features::SUBGROUP: naga validates a whole module
// against the device's capabilities, so the portable pipeline is built from the text above
// this line only (see src/kernels/matmul.rs). ----

// Rows of C per subgroup in matmul_subgroup; each lane loads SG_ROWS / 8 of them per k step.
const SG_ROWS: u32 = 32u;
const SG_SLOTS: u32 = SG_ROWS / 8u;

// Fast variant for subgroups of exactly 8 lanes (one workgroup = one subgroup): a tile of
// SG_ROWS rows x 32 columns of C. Lane L owns columns 4L..4L+3 and loads their B values
// itself; A rows are loaded once per subgroup, slot s of lane L holding row
// 32(s/4) + 4L + s%4, and reach the other lanes through subgroupBroadcast.
@compute @workgroup_size(8)
fn matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(subgroup_invocation_id) lane: u32) {
    let i0 = wg.y * SG_ROWS;
    let j = wg.x * 32u + lane * 4u;
    // acc[8s + L] is the row that lane L's slot s holds.
    var acc: array<vec4<f32>, SG_ROWS>;
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let brows = b_rows4(k0, j);
        var mine: array<vec4<f32>, SG_SLOTS>;
        for (var g = 0u; g < SG_SLOTS / 4u; g++) {
            let r = a_rows4(i0 + 32u * g + 4u * lane, k0);
            for (var q = 0u; q < 4u; q++) {
                mine[4u * g + q] = r[q];
            }
        }
        // subgroupBroadcast takes a constant lane, hence the eight spelled-out lines.
        for (var s = 0u; s < SG_SLOTS; s++) {
            let x = mine[s];
            let at = 8u * s;
            acc[at] = fma_row(acc[at], subgroupBroadcast(x, 0u), brows);
            acc[at + 1u] = fma_row(acc[at + 1u], subgroupBroadcast(x, 1u), brows);
            acc[at + 2u] = fma_row(acc[at + 2u], subgroupBroadcast(x, 2u), brows);
            acc[at + 3u] = fma_row(acc[at + 3u], subgroupBroadcast(x, 3u), brows);
            acc[at + 4u] = fma_row(acc[at + 4u], subgroupBroadcast(x, 4u), brows);
            acc[at + 5u] = fma_row(acc[at + 5u], subgroupBroadcast(x, 5u), brows);
            acc[at + 6u] = fma_row(acc[at + 6u], subgroupBroadcast(x, 6u), brows);
            acc[at + 7u] = fma_row(acc[at + 7u], subgroupBroadcast(x, 7u), brows);
        }
    }
    for (var s = 0u; s < SG_SLOTS; s++) {
        for (var l = 0u; l < 8u; l++) {
            store_row(i0 + 32u * (s / 4u) + 4u * l + s % 4u, j, acc[8u * s + l]);
        }
    }
}
