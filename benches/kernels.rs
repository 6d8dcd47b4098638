//! `cargo bench --bench kernels`: `gan-gpu bench --kernel all` on the default adapter, as a table.

use gan_gpu::bench::{self, Kernel};
use gan_gpu::gpu::{Gpu, GpuOptions};

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    println!("on {}", gpu.describe());
    println!("{}", bench::table_header());
    bench::run(&gpu, &Kernel::ALL, None, |row| println!("{}", bench::table_line(row)))
}
