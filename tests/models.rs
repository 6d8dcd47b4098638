//! Model files: the presets parse to the tutorials' parameter counts, and a malformed file
//! gets an error naming the line and the problem.

use gan_gpu::nn::gan::{self, parse_model};

/// (preset, G total, G trainable, D total) as the tutorials' Keras summaries print them.
const COUNTS: [(&str, usize, usize, usize); 4] = [
    ("mlp", 114_064, 114_064, 100_609),
    ("mlp-relu", 114_064, 114_064, 100_609),
    ("dcgan", 1_164_289, 1_164_289, 40_705),
    ("dcgan-upsample", 2_394_241, 2_368_705, 4_311_553),
];

#[test]
fn presets_have_the_tutorials_parameter_counts() {
    for (name, g_total, g_trainable, d_total) in COUNTS {
        let spec = gan::preset(name).unwrap();
        assert_eq!(spec.generator.param_count(), g_total, "{name} G");
        assert_eq!(spec.generator.trainable_count(), g_trainable, "{name} G trainable");
        assert_eq!(spec.discriminator.param_count(), d_total, "{name} D");
        assert_eq!(spec.discriminator.trainable_count(), d_total, "{name} D trainable");
    }
    // Every preset parses, checks, and produces images of the data's shape.
    for name in gan::preset_names() {
        let spec = gan::preset(name).unwrap();
        assert_eq!(spec.generator.output().iter().product::<usize>(), 784, "{name}");
    }
    assert_eq!(gan::preset_names().len(), 5);
}

#[test]
fn seed_002_transposed_convolutions_grow_2_3_6_12_28() {
    let spec = gan::preset("dcgan-avgpool").unwrap();
    let sizes: Vec<usize> =
        spec.generator.shapes().unwrap().iter().filter(|s| s.len() == 3).map(|s| s[0]).collect();
    assert_eq!(sizes, [2, 2, 3, 3, 3, 6, 6, 6, 12, 12, 12, 28, 28]);
    let dcgan = gan::preset("dcgan").unwrap();
    let sizes: Vec<usize> =
        dcgan.generator.shapes().unwrap().iter().filter(|s| s.len() == 3).map(|s| s[0]).collect();
    assert_eq!(sizes, [7, 14, 14, 28, 28, 28, 28]);
}

const GOOD: &str = r#"
name = "tiny"
image = [28, 28, 1]

[generator]
input = [10]
layers = [
    { type = "dense", units = 784 },
    { type = "tanh" },
]

[discriminator]
layers = [
    { type = "flatten" },
    { type = "dense", units = 1 },
]

[recipe]
batch = 4
noise = { kind = "uniform", low = -1.0, high = 1.0 }
pixel_range = [-1.0, 1.0]
d_loss = "mean_over_both"
d_optimizer = { kind = "adam", lr = 1e-3 }
g_optimizer = { kind = "rmsprop", lr = 1e-3 }
"#;

fn error_of(source: &str) -> String {
    format!("{:#}", parse_model(source, "bad.toml").unwrap_err())
}

#[test]
fn a_good_file_parses() {
    let spec = parse_model(GOOD, "good.toml").unwrap();
    assert_eq!(spec.name, "tiny");
    assert_eq!(spec.generator.param_count(), 10 * 784 + 784);
}

#[test]
fn malformed_files_name_the_line_and_the_problem() {
    let unknown = GOOD.replace(r#"{ type = "tanh" }"#, r#"{ type = "swish" }"#);
    let e = error_of(&unknown);
    assert!(e.starts_with("bad.toml:9:") && e.contains("swish"), "{e}");

    let not_chaining = GOOD.replace(r#"{ type = "flatten" },"#, "");
    let e = error_of(&not_chaining);
    assert!(e.starts_with("bad.toml:15:") && e.contains("flatten"), "{e}");

    let missing = GOOD.replace("batch = 4\n", "");
    let e = error_of(&missing);
    assert!(e.contains("bad.toml") && e.contains("batch"), "{e}");

    let wrong_output = GOOD.replace("units = 784", "units = 100");
    let e = error_of(&wrong_output);
    assert!(e.contains("generator makes 100 values per image"), "{e}");

    let typo = GOOD.replace("units = 1 }", "unit = 1 }");
    let e = error_of(&typo);
    assert!(e.starts_with("bad.toml:15:") && e.contains("unit"), "{e}");

    let bad_conv = GOOD.replace(
        r#"{ type = "flatten" },"#,
        r#"{ type = "conv2d", filters = 4, kernel = 40 }, { type = "flatten" },"#,
    );
    let e = error_of(&bad_conv);
    assert!(e.starts_with("bad.toml:14:") && e.contains("conv2d"), "{e}");
}

#[test]
fn model_files_load_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(gan::load_model(path.to_str().unwrap()).unwrap().name, "tiny");
    let e = format!("{:#}", gan::load_model("missing.toml").unwrap_err());
    assert!(e.contains("cannot read model file missing.toml"), "{e}");
}
