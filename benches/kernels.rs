//! `cargo bench --bench kernels`: `gan-gpu bench --kernel all` on the default adapter, as a table.

use gan_gpu::bench::{self, Kernel};
use gan_gpu::gpu::{Gpu, GpuOptions};
use gan_gpu::tune;

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    // The variants the CLI would run (measured once per adapter, then cached).
    let cache = tune::default_cache_dir();
    tune::choose(&gpu, cache.as_deref(), false, || eprintln!("measuring the kernel variants"))?;
    println!("on {}, kernels {}", gpu.describe(), gpu.variants().describe());
    println!("{}", bench::table_header());
    bench::run(&gpu, &Kernel::ALL, None, 0.0, |row| println!("{}", bench::table_line(row)))
}
