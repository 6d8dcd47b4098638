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
