//! CPU twin of `kernels::pool`: NHWC maps, 2x2 windows with stride 2 (an odd last row or
//! column belongs to no window, as in Keras's `valid` pooling).

/// The flat index of (image, row, column, channel) in an NHWC map of h x w pixels.
fn at(b: usize, y: usize, x: usize, ch: usize, h: usize, w: usize, c: usize) -> usize {
    ((b * h + y) * w + x) * c + ch
}

/// y = the mean of each 2x2 window of x: x is [batch, h, w, c], y is [batch, h/2, w/2, c].
pub fn avg_pool2x2(x: &[f32], y: &mut [f32], batch: usize, h: usize, w: usize, c: usize) {
    let (oh, ow) = (h / 2, w / 2);
    for b in 0..batch {
        for i in 0..oh {
            for j in 0..ow {
                for ch in 0..c {
                    let sum: f32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|&(di, dj)| x[at(b, 2 * i + di, 2 * j + dj, ch, h, w, c)])
                        .sum();
                    y[at(b, i, j, ch, oh, ow, c)] = 0.25 * sum;
                }
            }
        }
    }
}

/// dx = the gradient of [`avg_pool2x2`]: dy/4 over each window, zero where no window covers.
pub fn avg_pool2x2_backward(
    dy: &[f32],
    dx: &mut [f32],
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
) {
    let (oh, ow) = (h / 2, w / 2);
    for b in 0..batch {
        for yy in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    let (i, j) = (yy / 2, xx / 2);
                    let covered = i < oh && j < ow;
                    dx[at(b, yy, xx, ch, h, w, c)] =
                        if covered { 0.25 * dy[at(b, i, j, ch, oh, ow, c)] } else { 0.0 };
                }
            }
        }
    }
}

/// y = x with every pixel repeated over a 2x2 block: y is [batch, 2h, 2w, c].
pub fn upsample2x(x: &[f32], y: &mut [f32], batch: usize, h: usize, w: usize, c: usize) {
    for b in 0..batch {
        for yy in 0..2 * h {
            for xx in 0..2 * w {
                for ch in 0..c {
                    y[at(b, yy, xx, ch, 2 * h, 2 * w, c)] = x[at(b, yy / 2, xx / 2, ch, h, w, c)];
                }
            }
        }
    }
}

/// dx = the gradient of [`upsample2x`]: the sum of dy over each pixel's four copies.
pub fn upsample2x_backward(dy: &[f32], dx: &mut [f32], batch: usize, h: usize, w: usize, c: usize) {
    for b in 0..batch {
        for i in 0..h {
            for j in 0..w {
                for ch in 0..c {
                    let sum: f32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|&(di, dj)| dy[at(b, 2 * i + di, 2 * j + dj, ch, 2 * h, 2 * w, c)])
                        .sum();
                    dx[at(b, i, j, ch, h, w, c)] = sum;
                }
            }
        }
    }
}
