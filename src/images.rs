//! Images out: pixel conversion, PNG sample grids and strips, animated GIFs.

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
    let across = (count as f64).sqrt().ceil().max(1.0) as usize;
    save_tiles(path, pixels, count, rows, cols, across)
}

/// Writes `count` grey images of `rows` x `cols` bytes in one row with 2-pixel gaps.
pub fn save_strip(
    path: &Path,
    pixels: &[u8],
    count: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    save_tiles(path, pixels, count, rows, cols, count.max(1))
}

/// `count` images, `across` to a row.
fn save_tiles(
    path: &Path,
    pixels: &[u8],
    count: usize,
    rows: usize,
    cols: usize,
    across: usize,
) -> Result<()> {
    const GAP: usize = 2;
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

/// Writes an animated GIF that loops forever: frame k is image `frames[k]` of the grey
/// `rows` x `cols` images in `pixels`, enlarged `scale` times (nearest neighbour), shown for
/// `frame_ms` milliseconds.
pub fn save_gif(
    path: &Path,
    pixels: &[u8],
    frames: &[usize],
    rows: usize,
    cols: usize,
    scale: u32,
    frame_ms: u32,
) -> Result<()> {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame, Rgba, RgbaImage};
    let write = || -> Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = GifEncoder::new(file);
        encoder.set_repeat(Repeat::Infinite)?;
        let (width, height) = (cols as u32 * scale, rows as u32 * scale);
        for &k in frames {
            let img = &pixels[k * rows * cols..][..rows * cols];
            let frame = RgbaImage::from_fn(width, height, |x, y| {
                let v = img[(y / scale) as usize * cols + (x / scale) as usize];
                Rgba([v, v, v, 255])
            });
            let delay = Delay::from_numer_denom_ms(frame_ms, 1);
            encoder.encode_frame(Frame::from_parts(frame, 0, 0, delay))?;
        }
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))
}
