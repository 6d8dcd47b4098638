//! CPU twin of `shaders/matmul.wgsl`: C = f(op(A)·op(B) (+ bias)), accumulated in f64.

use crate::kernels::Fused;

/// C[m,n] = f(op(A)·op(B) (+ bias[n] added to every row when Some)) (+ C's own values when
/// `accumulate`), f what is `fused` when Some (an activation, or the derivative of one at its
/// output y, y shaped as C). A is stored [m,k] row-major, or [k,m] when `trans_a`; B is stored
/// [k,n], or [n,k] when `trans_b`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    c: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
    fused: Option<Fused<&[f32]>>,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "matmul: short slice");
    if let Some(bias) = bias {
        assert!(bias.len() >= n, "matmul: bias shorter than n");
    }
    // Element (i, kk) of op(A) is a[i * a_row + kk * a_k]; likewise for op(B) and (kk, j).
    let (a_row, a_k) = if trans_a { (1, m) } else { (k, 1) };
    let (b_k, b_col) = if trans_b { (1, k) } else { (n, 1) };
    for i in 0..m {
        for j in 0..n {
            // f64 so that the judge's own rounding is far below the kernels' f32 rounding.
            let mut sum = bias.map_or(0.0, |bias| bias[j] as f64);
            for kk in 0..k {
                sum += a[i * a_row + kk * a_k] as f64 * b[kk * b_k + j * b_col] as f64;
            }
            let out = super::activation::fused(sum as f32, i * n + j, fused);
            c[i * n + j] = if accumulate { c[i * n + j] + out } else { out };
        }
    }
}

/// dw[inputs, outputs] = xᵀ·dy and db[outputs] = dy's column sums (each plus its own values
/// when `accumulate`): a dense layer's weight and bias gradients, x [batch, inputs], dy [batch,
/// outputs].
#[allow(clippy::too_many_arguments)]
pub fn matmul_weight_grad(
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    batch: usize,
    inputs: usize,
    outputs: usize,
    accumulate: bool,
) {
    matmul(x, dy, None, dw, inputs, outputs, batch, true, false, accumulate, None);
    super::bias::bias_grad(dy, db, batch, outputs, accumulate);
}
