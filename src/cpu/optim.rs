//! CPU twin of `kernels::optim`.

use crate::kernels::optim::RmsPropParams;
use crate::kernels::{AdamParams, StepUniform};

/// One Adam step in PyTorch's form (eps added to sqrt(v_hat)), gradients first clipped
/// elementwise to [-clip, clip] when `hp.clip` is set; t = step.step, 1-based.
pub fn adam(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    len: usize,
    hp: AdamParams,
    step: &StepUniform,
) {
    let t = step.step as i32;
    assert!(t >= 1, "Adam's step count is 1-based");
    let bc1 = (1.0 - (hp.beta1 as f64).powi(t)) as f32;
    let bc2 = (1.0 - (hp.beta2 as f64).powi(t)) as f32;
    for i in 0..len {
        let g = match hp.clip {
            Some(c) => grads[i].clamp(-c, c),
            None => grads[i],
        };
        m[i] = hp.beta1 * m[i] + (1.0 - hp.beta1) * g;
        v[i] = hp.beta2 * v[i] + (1.0 - hp.beta2) * g * g;
        let m_hat = m[i] / bc1;
        let v_hat = v[i] / bc2;
        params[i] -= hp.lr * m_hat / (v_hat.sqrt() + hp.eps);
    }
}

/// One RMSprop step as Keras takes it: v = rho * v + (1 - rho) * g^2, then
/// params -= lr * g / (sqrt(v) + eps), gradients first clipped to [-clip, clip] when
/// `hp.clip` is set.
pub fn rmsprop(params: &mut [f32], grads: &[f32], v: &mut [f32], len: usize, hp: RmsPropParams) {
    for i in 0..len {
        let g = match hp.clip {
            Some(c) => grads[i].clamp(-c, c),
            None => grads[i],
        };
        v[i] = hp.rho * v[i] + (1.0 - hp.rho) * g * g;
        params[i] -= hp.lr * g / (v[i].sqrt() + hp.eps);
    }
}

/// average = decay * average + (1 - decay) * params, as average + (1 - decay) * (params -
/// average).
pub fn ema_update(average: &mut [f32], params: &[f32], len: usize, decay: f32) {
    for (a, &p) in average[..len].iter_mut().zip(&params[..len]) {
        *a += (1.0 - decay) * (p - *a);
    }
}
