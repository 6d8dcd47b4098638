// Sigmoid cross-entropy with logits, per sample, and its gradient, in one pass. Any target
// in [0, 1] works, so label smoothing is just a different t.

struct Params {
    n: u32,
    // Multiplies the gradient: 1/n gives the gradient of the mean loss.
    grad_scale: f32,
}

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 256u;

// losses = max(z,0) - z*t + log(1+exp(-|z|)), the form that never overflows;
// dz = (sigmoid(z) - t) * grad_scale, with the sigmoid built from the same exp(-|z|).
@compute @workgroup_size(WG)
fn bce_with_logits(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i >= p.n {
        return;
    }
    let zi = z[i];
    let ti = t[i];
    let e = exp(-abs(zi));
    losses[i] = max(zi, 0.0) - zi * ti + log(1.0 + e);
    let s = 1.0 / (1.0 + e);
    let sigmoid = select(e * s, s, zi >= 0.0);
    dz[i] = (sigmoid - ti) * p.grad_scale;
}

// ---- Softmax cross-entropy: one row of `classes` logits per sample and an integer label.

struct RowParams {
    rows: u32,
    classes: u32,
    // Multiplies the gradient: 1/rows gives the gradient of the mean loss.
    grad_scale: f32,
}

@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<uniform> rp: RowParams;

// One thread per row: rows are short (a classifier's classes), and a thread that owns its row
// needs no barriers. The row's maximum is subtracted before exp, so no logit overflows it.
@compute @workgroup_size(WG)
fn softmax_cross_entropy(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let row = gid.x + gid.y * groups.x * WG;
    if row >= rp.rows {
        return;
    }
    let base = row * rp.classes;
    var top = z[base];
    for (var j = 1u; j < rp.classes; j++) {
        top = max(top, z[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < rp.classes; j++) {
        sum += exp(z[base + j] - top);
    }
    let label = labels[row];
    // -log softmax(z)[label] = log(sum) - (z[label] - top).
    losses[row] = log(sum) - (z[base + label] - top);
    for (var j = 0u; j < rp.classes; j++) {
        let p = exp(z[base + j] - top) / sum;
        dz[base + j] = (p - select(0.0, 1.0, j == label)) * rp.grad_scale;
    }
}

@group(0) @binding(1) var<storage, read_write> probs: array<f32>;
@group(0) @binding(2) var<uniform> sp: RowParams;

// probs = softmax of each row of z, as softmax_cross_entropy computes it (grad_scale unused).
@compute @workgroup_size(WG)
fn softmax(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let row = gid.x + gid.y * groups.x * WG;
    if row >= sp.rows {
        return;
    }
    let base = row * sp.classes;
    var top = z[base];
    for (var j = 1u; j < sp.classes; j++) {
        top = max(top, z[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < sp.classes; j++) {
        sum += exp(z[base + j] - top);
    }
    for (var j = 0u; j < sp.classes; j++) {
        probs[base + j] = exp(z[base + j] - top) / sum;
    }
}
