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

/// The maximum of a row and the sum of exp(z - max) over it.
fn row_max_and_sum(row: &[f32]) -> (f32, f32) {
    let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (top, row.iter().map(|&z| (z - top).exp()).sum())
}

/// Softmax cross-entropy of `rows` rows of `classes` logits with integer labels:
/// losses[r] = -log softmax(logits[r])[labels[r]];
/// dlogits[r] = (softmax(logits[r]) - onehot(labels[r])) * grad_scale.
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    dlogits: &mut [f32],
    losses: &mut [f32],
    rows: usize,
    classes: usize,
    grad_scale: f32,
) {
    for r in 0..rows {
        let row = &logits[r * classes..][..classes];
        let label = labels[r] as usize;
        assert!(label < classes, "label {label} of row {r} is not below {classes}");
        let (top, sum) = row_max_and_sum(row);
        losses[r] = sum.ln() - (row[label] - top);
        for (j, (d, &z)) in dlogits[r * classes..][..classes].iter_mut().zip(row).enumerate() {
            let p = (z - top).exp() / sum;
            *d = (p - if j == label { 1.0 } else { 0.0 }) * grad_scale;
        }
    }
}

/// probs[r] = softmax(logits[r]) for `rows` rows of `classes` logits.
pub fn softmax(logits: &[f32], probs: &mut [f32], rows: usize, classes: usize) {
    for r in 0..rows {
        let row = &logits[r * classes..][..classes];
        let (top, sum) = row_max_and_sum(row);
        for (p, &z) in probs[r * classes..][..classes].iter_mut().zip(row) {
            *p = (z - top).exp() / sum;
        }
    }
}
