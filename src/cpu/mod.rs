//! Plain-Rust twins of the GPU kernels: same names, same argument order, straightforward
//! loops. They are the judges in the tests, and are themselves checked against PyTorch's
//! values (`../shared/fixtures/ops.safetensors`) and against finite differences.

pub mod activation;
pub mod batchnorm;
pub mod bias;
pub mod conv;
pub mod gather;
pub mod loss;
pub mod matmul;
pub mod metrics;
pub mod optim;
pub mod pool;
pub mod rng;
