//! CPU twin of `kernels::loss`.

/// Sigmoid cross-entropy with logits, per sample, and its gradient scaled by `grad_scale`:
/// losses[i] = max(z,0) - z*t + log(1+exp(-|z|)); dz[i] = (sigmoid(z) - t) * grad_scale.
pub fn bce_with_logits(
    z: &[f32],
    t: &[f32],
    dz: &mut [f32],
    losses: &mut [f32],
    n: usize,
    grad_scale: f32,
) {
    for i in 0..n {
        let (z, t) = (z[i], t[i]);
        let e = (-z.abs()).exp();
        losses[i] = z.max(0.0) - z * t + e.ln_1p();
        let sigmoid = if z >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
        dz[i] = (sigmoid - t) * grad_scale;
    }
}
