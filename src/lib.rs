//! gan-gpu: a GAN trainer whose every numeric step runs in handwritten WGSL compute shaders.
//!
//! Layout: [`gpu`] (context, buffers, recorded work) -> [`kernels`] (host side of each WGSL
//! kernel family in `shaders/`) with [`cpu`] (the plain-Rust twin of every kernel, same names,
//! same argument order) -> [`nn`] (layers and models) -> [`train`] (the training loop) and
//! [`data`] (datasets), with [`checkpoint`] and [`images`] for what training writes.

pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod classifier;
pub mod cpu;
pub mod data;
pub mod eval;
pub mod generate;
pub mod gpu;
pub mod images;
pub mod kernels;
pub mod latent;
pub mod nn;
pub mod reference;
pub mod report;
pub mod shaders;
pub mod train;
pub mod tune;
