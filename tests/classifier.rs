//! The digit classifier behind `gan-gpu eval`: the shipped weights classify MNIST's test digits,
//! `embed` returns what it promises, training learns, and one training step on the GPU equals
//! the same step composed of the CPU twins.

mod common;

use std::sync::{Arc, OnceLock};

use gan_gpu::check::{REDUCTION, Tolerance, compare};
use gan_gpu::classifier::{
    self, CLASSES, Classifier, DROPOUT_BODY, IMAGE_LEN, ModelFile, PIXEL_SCALE, STREAM_BATCH,
    Trainer,
};
use gan_gpu::cpu;
use gan_gpu::data::{self, Dataset, DatasetName};
use gan_gpu::gpu::Gpu;
use gan_gpu::kernels::StepUniform;
use gan_gpu::nn::Mode;
use gan_gpu::reference::CpuNet;

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    if let Err(e) = compare(name, got, want, tol) {
        panic!("{e}");
    }
}

fn test_set() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        data::load_test_set(DatasetName::Mnist, None).expect("MNIST's test set (set GAN_GPU_DATA)")
    })
}

fn train_set() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| data::load_training_set(DatasetName::Mnist, None).expect("MNIST"))
}

/// The first adapter: the classifier's own kernels are each tested on every adapter elsewhere.
fn first_gpu() -> &'static Arc<Gpu> {
    &common::gpus()[0]
}

/// The shipped weights on every fifth test digit (2,000, two chunks of the forward pass, spread
/// over the whole set as `gan-gpu classifier eval`'s 10,000 are): at least 99% right.
#[test]
fn shipped_weights_classify_mnist_test_digits() {
    let gpu = first_gpu();
    let classifier = Classifier::shipped(gpu).unwrap();
    let test = test_set();
    let picked: Vec<usize> = (0..test.count).step_by(5).collect();
    let images: Vec<u8> = picked
        .iter()
        .flat_map(|&i| &test.images[i * IMAGE_LEN..(i + 1) * IMAGE_LEN])
        .copied()
        .collect();
    let labels: Vec<u8> = picked.iter().map(|&i| test.labels[i]).collect();
    let e = classifier.embed(gpu, &images, picked.len());
    let accuracy = classifier::accuracy(&e.probs, &labels);
    eprintln!("shipped classifier: {:.2}% of {} test digits", 100.0 * accuracy, picked.len());
    assert!(accuracy >= 0.99, "accuracy {accuracy} on {} test digits", picked.len());
}

/// Shapes, probabilities that sum to 1, ReLU features, and the same answer for an image
/// whatever chunk or batch position it is embedded in; on every adapter.
#[test]
fn embed_returns_features_and_probabilities() {
    common::on_every_gpu("embed", |gpu| {
        let classifier = Classifier::shipped(gpu).unwrap();
        let test = test_set();
        let count = 37;
        let e = classifier.embed(gpu, &test.images, count);
        assert_eq!(e.dim, 128);
        assert_eq!(e.features.len(), count * e.dim);
        assert_eq!(e.probs.len(), count * CLASSES);
        assert!(e.features.iter().all(|&f| f >= 0.0), "features after a ReLU are >= 0");
        assert!(e.features.iter().any(|&f| f > 0.0));
        for (i, row) in e.probs.chunks_exact(CLASSES).enumerate() {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
            assert!(row.iter().all(|p| (0.0..=1.0).contains(p)), "row {i}: {row:?}");
        }
        // Images 30..37 on their own.
        let tail = classifier.embed(gpu, &test.images[30 * IMAGE_LEN..], 7);
        assert_close("features", &tail.features, &e.features[30 * e.dim..], REDUCTION);
        assert_close("probs", &tail.probs, &e.probs[30 * CLASSES..], REDUCTION);
    });
}

/// The shipped weights are of the shipped model file's network, and saved weights load back
/// into the same classifier.
#[test]
fn weights_round_trip_through_a_file() {
    let gpu = first_gpu();
    let classifier = Classifier::shipped(gpu).unwrap();
    assert_eq!(classifier.spec, ModelFile::shipped().spec());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    classifier.save(gpu, &path).unwrap();
    let loaded = Classifier::load(gpu, &path).unwrap();
    assert_eq!(loaded.spec, classifier.spec);
    assert_eq!(loaded.params(gpu), classifier.params(gpu));
}

/// A few hundred steps from scratch: the loss falls and the test accuracy is far above chance
/// (10%). 300 steps of batch 32 take about 20 s on the CPU adapter.
#[test]
fn training_learns_digits() {
    let gpu = first_gpu();
    let model = ModelFile::shipped();
    let spec = model.spec();
    let recipe = classifier::Recipe { batch: 32, ..model.train.clone() };
    let fresh = Classifier::new(gpu, spec.clone(), &spec.init_params(3)).unwrap();
    let mut trainer = Trainer::new(gpu.clone(), fresh, train_set(), recipe, 3).unwrap();
    let mut losses = Vec::new();
    for step in 1..=300 {
        trainer.step();
        if step <= 10 || step > 290 {
            losses.push(trainer.batch_loss());
        }
    }
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[10..]));
    let test = test_set();
    let count = 1000;
    let e = trainer.classifier.embed(gpu, &test.images, count);
    let accuracy = classifier::accuracy(&e.probs, &test.labels[..count]);
    eprintln!("loss {first:.3} -> {last:.3}, test accuracy {accuracy:.3} after 300 steps");
    assert!(first > 2.0, "an untrained classifier's loss is about ln 10: {first}");
    assert!(last < 0.5 * first, "the loss did not fall: {first} -> {last}");
    assert!(accuracy > 0.8, "test accuracy {accuracy} after 300 steps");
}

/// One step of the GPU trainer (batch drawn, images and labels gathered, dropout, forward,
/// softmax cross-entropy, backward, Adam) against the same step composed of the CPU twins:
/// gradients and updated weights agree. Adam's eps is large here so that the update is
/// smooth in the gradient (with eps 1e-7 the first step is lr * sign(g), which flips on
/// gradients that round to either side of zero).
#[test]
fn one_training_step_matches_the_cpu_twins() {
    let gpu = first_gpu();
    let model = ModelFile::shipped();
    let spec = model.spec();
    let mut recipe = classifier::Recipe { batch: 24, ..model.train.clone() };
    recipe.adam.lr = 0.1;
    recipe.adam.eps = 1.0;
    let (seed, data) = (5, train_set());
    let initial = spec.init_params(seed as u64);
    let fresh = Classifier::new(gpu, spec.clone(), &initial).unwrap();
    let mut trainer = Trainer::new(gpu.clone(), fresh, data, recipe.clone(), seed).unwrap();
    trainer.step();
    let (gpu_loss, gpu_grads) = (trainer.batch_loss(), trainer.grads());
    let gpu_params = trainer.classifier.params(gpu);

    let batch = recipe.batch;
    let su = StepUniform::new(1, seed);
    let mut indices = vec![0; batch];
    cpu::rng::rng_randint(&mut indices, batch, data.count as u32, STREAM_BATCH, &su);
    let mut input = vec![0.0; batch * IMAGE_LEN];
    let count = data.count;
    cpu::gather::gather_rows(
        &data.images,
        0,
        count,
        &indices,
        &mut input,
        batch,
        IMAGE_LEN,
        PIXEL_SCALE,
        0.0,
    );
    let mut labels = vec![0; batch];
    cpu::gather::gather_labels(&data.labels, &indices, &mut labels, batch);
    let mut net = CpuNet { spec: spec.clone(), params: initial.clone() };
    let acts = net.forward(batch, &input, Mode::Training, DROPOUT_BODY, &su);
    let (mut dz, mut losses) = (vec![0.0; batch * CLASSES], vec![0.0; batch]);
    let scale = 1.0 / batch as f32;
    let logits = acts.output();
    cpu::loss::softmax_cross_entropy(logits, &labels, &mut dz, &mut losses, batch, CLASSES, scale);
    let (grads, _) = net.backward(batch, &acts, dz, true, DROPOUT_BODY, &su);
    let cpu_loss = losses.iter().sum::<f32>() / batch as f32;
    assert_close("batch loss", &[gpu_loss], &[cpu_loss], REDUCTION);

    let shapes = spec.params();
    assert_eq!(gpu_grads.len(), grads.len());
    for (k, (g, want)) in gpu_grads.iter().zip(&grads).enumerate() {
        assert_close(&format!("gradient {}", shapes[k].name), g, want, REDUCTION);
        let (mut w, mut m, mut v) = (initial[k].clone(), vec![0.0; g.len()], vec![0.0; g.len()]);
        cpu::optim::adam(&mut w, want, &mut m, &mut v, g.len(), recipe.adam, &su);
        let delta = |after: &[f32]| -> Vec<f32> {
            after.iter().zip(&initial[k]).map(|(a, b)| a - b).collect()
        };
        let name = format!("update of {}", shapes[k].name);
        assert_close(&name, &delta(&gpu_params[k]), &delta(&w), REDUCTION);
    }
}
