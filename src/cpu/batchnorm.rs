//! CPU twin of `kernels::batchnorm`: batch normalization of each column of a [rows, cols]
//! matrix, in f64, with Keras's semantics (biased batch variance; moving statistics
//! `momentum * moving + (1 - momentum) * batch`).

/// Column c of a row-major [rows, cols] matrix, in f64.
fn column(m: &[f32], rows: usize, cols: usize, c: usize) -> impl Iterator<Item = f64> + '_ {
    (0..rows).map(move |r| m[r * cols + c] as f64)
}

/// Training mode: y = gamma * (x - mean) / sqrt(var + eps) + beta with each column's batch
/// mean and biased variance, saved in `mean_out` and `var_out`; then
/// running = momentum * running + (1 - momentum) * batch, the variance scaled by
/// rows / (rows - 1) first when `unbiased_running_var`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    x: &[f32],
    y: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean_out: &mut [f32],
    var_out: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    rows: usize,
    cols: usize,
    eps: f32,
    momentum: f32,
    unbiased_running_var: bool,
) {
    assert!(!unbiased_running_var || rows > 1, "an unbiased variance of one row");
    let n = rows as f64;
    let m = momentum as f64;
    for c in 0..cols {
        let mean = column(x, rows, cols, c).sum::<f64>() / n;
        let var = column(x, rows, cols, c).map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        mean_out[c] = mean as f32;
        var_out[c] = var as f32;
        normalize_column(x, y, gamma[c], beta[c], mean, var, rows, cols, c, eps);
        let running = if unbiased_running_var { var * n / (n - 1.0) } else { var };
        running_mean[c] = (m * running_mean[c] as f64 + (1.0 - m) * mean) as f32;
        running_var[c] = (m * running_var[c] as f64 + (1.0 - m) * running) as f32;
    }
}

#[allow(clippy::too_many_arguments)]
fn normalize_column(
    x: &[f32],
    y: &mut [f32],
    gamma: f32,
    beta: f32,
    mean: f64,
    var: f64,
    rows: usize,
    cols: usize,
    c: usize,
    eps: f32,
) {
    let scale = gamma as f64 / (var + eps as f64).sqrt();
    for r in 0..rows {
        let i = r * cols + c;
        y[i] = ((x[i] as f64 - mean) * scale + beta as f64) as f32;
    }
}

/// The gradient of [`batch_norm_train`]'s y given its saved batch statistics:
/// dbeta = sum dy, dgamma = sum dy * xhat with xhat = (x - mean) / sqrt(var + eps), and
/// dx = gamma / sqrt(var + eps) * (dy - dbeta / rows - xhat * dgamma / rows).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    rows: usize,
    cols: usize,
    eps: f32,
) {
    let n = rows as f64;
    for c in 0..cols {
        let inv_std = 1.0 / (var[c] as f64 + eps as f64).sqrt();
        let xhat = |r: usize| (x[r * cols + c] as f64 - mean[c] as f64) * inv_std;
        let sum_dy = column(dy, rows, cols, c).sum::<f64>();
        let sum_dy_xhat =
            column(dy, rows, cols, c).enumerate().map(|(r, g)| g * xhat(r)).sum::<f64>();
        dbeta[c] = sum_dy as f32;
        dgamma[c] = sum_dy_xhat as f32;
        let k = gamma[c] as f64 * inv_std;
        for r in 0..rows {
            let i = r * cols + c;
            dx[i] = (k * (dy[i] as f64 - sum_dy / n - xhat(r) * sum_dy_xhat / n)) as f32;
        }
    }
}

/// Inference mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_infer(
    x: &[f32],
    y: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    rows: usize,
    cols: usize,
    eps: f32,
) {
    for c in 0..cols {
        let (mean, var) = (running_mean[c] as f64, running_var[c] as f64);
        normalize_column(x, y, gamma[c], beta[c], mean, var, rows, cols, c, eps);
    }
}
