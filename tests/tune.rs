//! Kernel variants chosen by measurement (src/tune.rs): the fastest variant that passed its
//! check wins, the choice is cached per adapter and read back instead of measured again, and a
//! family with one variant on an adapter is not timed.

mod common;

use std::process::Command;

use gan_gpu::gpu::{KernelCaps, Variant, Variants};
use gan_gpu::tune::{self, Family, Source, Timing};

fn timing(family: Family, variant: Variant, ms: Option<f64>) -> Timing {
    let error = ms.is_none().then(|| "disagrees with its CPU twin".to_string());
    Timing { family, variant, ms, error }
}

#[test]
fn the_fastest_variant_that_passed_its_check_wins() {
    let timings = [
        timing(Family::Matmul, Variant::Subgroup, Some(5.0)),
        timing(Family::Matmul, Variant::Portable, Some(8.0)),
        timing(Family::Conv, Variant::Subgroup, None),
        timing(Family::Conv, Variant::Portable, Some(160.0)),
    ];
    assert_eq!(tune::fastest(Family::Matmul, &timings), Some(Variant::Subgroup));
    // The excluded variant never wins, however it was timed.
    assert_eq!(tune::fastest(Family::Conv, &timings), Some(Variant::Portable));
    assert_eq!(tune::fastest(Family::Conv, &timings[2..3]), None);
    let slower_subgroup = [
        timing(Family::Matmul, Variant::Subgroup, Some(9.0)),
        timing(Family::Matmul, Variant::Portable, Some(8.0)),
    ];
    assert_eq!(tune::fastest(Family::Matmul, &slower_subgroup), Some(Variant::Portable));
}

#[test]
fn variants_are_measured_once_per_adapter_then_read_from_the_cache() {
    for gpu in common::gpus() {
        let _gl = common::serialize_gl(gpu);
        let dir = tempfile::tempdir().unwrap();
        let cache_file = dir.path().join("kernel-variants.json");
        let before = gpu.variants();
        let mut measured = false;
        let first = tune::choose(gpu, Some(dir.path()), false, || measured = true).unwrap();
        assert!(measured && first.source == Source::Measured, "{}", common::describe(gpu));
        // Every candidate of every family with more than one timed, each passing its check, the
        // fastest chosen; a family with one candidate takes it untimed (conv on an adapter
        // without subgroups, slices on a CPU adapter).
        let timed = |f: Family| first.timings.iter().filter(|t| t.family == f).count();
        for family in Family::ALL {
            let candidates = family.candidates(&gpu.caps);
            let chosen = match family {
                Family::Matmul => first.variants.matmul,
                Family::Conv => first.variants.conv,
                Family::ConvWeightGrad => first.variants.conv_weight_grad,
                Family::OneChannelConv => first.variants.one_channel_conv,
                Family::Slices => first.variants.slices,
                Family::Reads => first.variants.reads,
            };
            if let [only] = candidates {
                assert_eq!((timed(family), chosen), (0, *only), "{}", common::describe(gpu));
            } else {
                assert_eq!(timed(family), candidates.len(), "{}", common::describe(gpu));
                assert_eq!(chosen, tune::fastest(family, &first.timings).unwrap());
            }
        }
        assert_eq!(Variant::ONE_CHANNEL.len(), 2, "one-channel convs choose on every adapter");
        assert_eq!(Variant::SLICES.len(), 2, "slicing chooses on every adapter");
        for t in &first.timings {
            assert!(t.ms.is_some_and(|ms| ms > 0.0), "{t:?} on {}", common::describe(gpu));
        }
        assert_eq!(gpu.variants(), first.variants);

        // The next command reads the choice back without measuring.
        gpu.set_variants(before);
        let again =
            tune::choose(gpu, Some(dir.path()), false, || panic!("measured again")).unwrap();
        assert_eq!(again.source, Source::Cached(cache_file.clone()));
        assert_eq!(again.variants, first.variants);
        // The same timings, to JSON's round trip of an f64.
        let ms =
            |c: &tune::Choice| -> Vec<f64> { c.timings.iter().map(|t| t.ms.unwrap()).collect() };
        for (a, b) in ms(&again).into_iter().zip(ms(&first)) {
            assert!((a - b).abs() <= 1e-9 * b, "{:?} vs {:?}", again.timings, first.timings);
        }
        assert_eq!(gpu.variants(), first.variants);

        // Another driver (or another build of the kernels) is a different key.
        let cached = tune::cached(&gpu.info, &gpu.caps, dir.path()).unwrap();
        assert_eq!(cached.0, first.variants);
        let mut other_driver = gpu.info.clone();
        other_driver.driver_info.push_str(" (updated)");
        assert!(tune::cached(&other_driver, &gpu.caps, dir.path()).is_none());
        // So is the same adapter with texture mirrors switched the other way
        // (--no-texture-mirrors).
        let other_reads = KernelCaps { texture_mirrors: !gpu.caps.texture_mirrors, ..gpu.caps };
        assert!(tune::cached(&gpu.info, &other_reads, dir.path()).is_none());

        // A damaged cache costs a measurement, not an error, and is rewritten.
        std::fs::write(&cache_file, "{ not json").unwrap();
        let mut remeasured = false;
        let fresh = tune::choose(gpu, Some(dir.path()), false, || remeasured = true).unwrap();
        assert!(remeasured && fresh.source == Source::Measured);
        assert!(tune::cached(&gpu.info, &gpu.caps, dir.path()).is_some());

        // The reads variant decides whether kernels read through texture mirrors: never on
        // Buffers, on Textures where mirrors are not switched off.
        let tensor = gpu.upload(&[1.0; 16]);
        gpu.set_variants(Variants { reads: Variant::Textures, ..before });
        assert_eq!(gpu.quad_texture_fits(&tensor), gpu.caps.texture_mirrors);
        gpu.set_variants(Variants { reads: Variant::Buffers, ..before });
        assert!(!gpu.quad_texture_fits(&tensor));
        gpu.set_variants(before);
    }
}

#[test]
fn devices_tune_caches_what_devices_then_reports() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
            .args(args)
            .env("GAN_GPU_CACHE_DIR", dir.path())
            .output()
            .expect("running gan-gpu");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let tuned: serde_json::Value =
        serde_json::from_str(run(&["devices", "--tune", "--json"]).trim()).unwrap();
    let chosen = &tuned["variants"];
    let families = ["matmul", "conv", "conv_weight_grad", "one_channel_conv", "slices", "reads"];
    assert!(families.iter().all(|f| chosen[f].is_string()), "{tuned}");
    // `devices` lists the tuned adapter first (the default pick) with the cached choice.
    let listed = run(&["devices", "--json"]);
    let first: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(&first["chosen_variants"], chosen, "{listed}");
}
