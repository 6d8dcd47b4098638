//! Images out: pixel conversion and PNG sample grids.

use std::path::Path;

use anyhow::{Context, Result};

/// Pixels in `range` to bytes 0..=255 (clamped), the form IDX files and PNGs hold.
pub fn to_bytes(pixels: &[f32], range: (f32, f32)) -> Vec<u8> {
    let (low, high) = range;
    pixels
        .iter()
        .map(|&v| ((v - low) / (high - low) * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Writes `count` grey images of `rows` x `cols` bytes as a square-ish grid with 2-pixel gaps.
pub fn save_grid(path: &Path, pixels: &[u8], count: usize, rows: usize, cols: usize) -> Result<()> {
    const GAP: usize = 2;
    let across = (count as f64).sqrt().ceil().max(1.0) as usize;
    let down = count.div_ceil(across).max(1);
    let width = across * (cols + GAP) + GAP;
    let height = down * (rows + GAP) + GAP;
    let mut grid = image::GrayImage::new(width as u32, height as u32);
    for (i, img) in pixels.chunks_exact(rows * cols).take(count).enumerate() {
        let (x0, y0) = ((i % across) * (cols + GAP) + GAP, (i / across) * (rows + GAP) + GAP);
        for (j, &v) in img.iter().enumerate() {
            grid.put_pixel((x0 + j % cols) as u32, (y0 + j / cols) as u32, image::Luma([v]));
        }
    }
    grid.save(path).with_context(|| format!("writing {}", path.display()))
}
