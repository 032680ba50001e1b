//! Meta-training throughput on the CPU: one epoch of one shard of ../shared/data/ml-100k with
//! the reference model (configs/ml-100k.toml), for every algorithm. Prints users per second and
//! seconds per epoch for that shard, and the estimate for a full epoch of all 8 shards on this
//! machine's cores (shards train in parallel, one libtorch thread each).
//!
//!   make bench-train        (or: cargo bench --bench train -- [--device cpu|cuda] [--data DIR])
//!
//! `--only fomaml,maml-batched,...` measures a subset (names as printed). `--data` names the
//! ml-100k folder (default ../shared/data/ml-100k); on `--device cuda` the
//! shard trains on the GPU (one shard: the estimate for all shards is S times the shard's time).
//! `--epochs N` trains N epochs and times the last one (default 1): costs that build up with
//! the optimizer's state, such as subnormal Adam moments, only show after the first.
//! `fomaml` takes the steps in the form `train_epoch` picks for the device (row-sparse on the
//! CPU), `fomaml-dense` in the reference's dense form; each prints a digest of the weights after
//! the timed epoch, equal when the two forms train the same bytes. With `--data` naming an
//! ml-1m folder (`ratings.dat`) and `--config configs/ml-1m.toml`, the shard is ml-1m's.
//! `--only adam` times the CPU Adam update alone (FOMAML takes two a user) on the shard model's
//! parameter count: the portable loop against the one `adam_update` picks for this CPU
//! (AVX-512 or AVX2), alternating, the best of five rounds of 100 updates each.
use std::path::PathBuf;
use std::time::Instant;

use eemu::config::{Algorithm, Config, InnerLoop};
use eemu::ingest::{ingest, IngestRequest, InputFormat};
use eemu::store::Store;
use eemu::train::{train_epoch_in, Adam, FomamlForm, ShardData};
use sha2::{Digest, Sha256};
use tch::Device;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned());
    let input = arg("--data").map_or_else(|| root.join("../shared/data/ml-100k"), PathBuf::from);
    let device = match arg("--device").as_deref() {
        Some("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let config_path = arg("--config").map_or_else(|| root.join("configs/ml-100k.toml"), PathBuf::from);
    if !input.join("u.data").is_file() && !input.join("ratings.dat").is_file() {
        println!("train bench: {} not present, nothing measured", input.display());
        return;
    }
    let dataset = input.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    eemu::engine::pin_cpu_kernels();
    tch::set_num_threads(1);
    let config = Config::load(&config_path).expect("config");
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = Store::new(tmp.path().join("store"));
    let request = IngestRequest { format: InputFormat::Auto, input, users: None, items: None };
    ingest(&request, &config, &store).expect("ingest");
    let (_, prepared) = store.load().expect("load");
    let epochs: usize = arg("--epochs").map_or(1, |n| n.parse().expect("--epochs N"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "train {dataset}, shard 0 of {}, epoch {epochs} timed, {device:?}, 1 libtorch thread, {}",
        config.shards.count,
        eemu::engine::cpu_kernels()
    );
    let only = arg("--only");
    let data = ShardData::from_prepared(&prepared, Some(0));
    let users = data.users.len();
    // Epochs 1..=epochs of shard 0 from fresh weights, the last one timed: (seconds, its loss,
    // the share of subnormal first moments after it, a digest of the weights).
    let epoch = |algorithm: Algorithm, inner_loop: InnerLoop, form: FomamlForm| {
        let mut cfg = config.train.clone();
        cfg.algorithm = algorithm;
        cfg.inner_loop = inner_loop;
        let mut model = data.new_model(&prepared, device);
        let mut adam = Adam::new(&model.params.flat, cfg.learning_rate);
        for e in 1..epochs {
            train_epoch_in(&mut model, &data, &cfg, &mut adam, config.seed, e, form);
        }
        let start = Instant::now();
        let loss = train_epoch_in(&mut model, &data, &cfg, &mut adam, config.seed, epochs, form);
        let seconds = start.elapsed().as_secs_f64();
        let m = adam.moments().0.abs();
        let subnormal = m.lt(f64::from(f32::MIN_POSITIVE)).logical_and(&m.gt(0.0));
        let weights = Vec::<f32>::try_from(model.params.flat.detach().to_device(Device::Cpu)).expect("f32 weights");
        let digest = Sha256::digest(weights.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
        let digest: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        (seconds, loss, subnormal.to_kind(tch::Kind::Double).mean(tch::Kind::Double).double_value(&[]), digest)
    };
    if device != Device::Cpu {
        // CUDA context, cuBLAS handles and the caching allocator start on first use: one untimed
        // epoch keeps that out of the first measured algorithm.
        epoch(Algorithm::Standard, InnerLoop::PerUser, FomamlForm::Dense);
    }
    if device == Device::Cpu && only.as_ref().is_some_and(|o| o.split(',').any(|x| x == "adam")) {
        adam_update_line(data.new_model(&prepared, device).params.flat.numel());
    }
    let form = FomamlForm::for_device(device);
    let runs = [
        ("fomaml", Algorithm::Fomaml, InnerLoop::PerUser, form),
        ("fomaml-dense", Algorithm::Fomaml, InnerLoop::PerUser, FomamlForm::Dense),
        ("maml", Algorithm::Maml, InnerLoop::PerUser, form),
        ("maml-batched", Algorithm::Maml, InnerLoop::Batched, form),
        ("reptile", Algorithm::Reptile, InnerLoop::PerUser, form),
        ("reptile-batched", Algorithm::Reptile, InnerLoop::Batched, form),
        ("standard", Algorithm::Standard, InnerLoop::PerUser, form),
    ];
    for (name, algorithm, inner_loop, form) in runs {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|x| x == name)) {
            continue;
        }
        let (seconds, loss, subnormal, digest) = epoch(algorithm, inner_loop, form);
        println!(
            "  {:<15} {users} users, {:.1} s/epoch, {:.0} users/s, loss {loss:.4}, weights {digest}, {:.1}% of Adam's first moments subnormal; all {} shards on {}: ~{:.0} s/epoch",
            name,
            seconds,
            users as f64 / seconds,
            100.0 * subnormal,
            config.shards.count,
            if device == Device::Cpu { format!("{cores} core(s)") } else { "one GPU, one after another".into() },
            if device == Device::Cpu {
                seconds * config.shards.count as f64 / cores.min(config.shards.count) as f64
            } else {
                seconds * config.shards.count as f64
            }
        );
    }
}

/// Prints the time of one Adam update over `n` parameters, portable and dispatched.
fn adam_update_line(n: usize) {
    let mut p: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
    // A third of the gradients nonzero, as FOMAML's (untouched embedding rows give zeros).
    let g: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { ((i as f32) * 0.11).cos() * 1e-3 } else { 0.0 }).collect();
    let (mut m, mut v) = (vec![1e-4f32; n], vec![1e-6f32; n]);
    let mut best = [f64::INFINITY; 2];
    for _round in 0..5 {
        for (k, best) in best.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..100 {
                if k == 0 {
                    eemu::train::adam_update_portable(&mut p, &g, &mut m, &mut v, 1e-3, 0.03);
                } else {
                    eemu::train::adam_update(&mut p, &g, &mut m, &mut v, 1e-3, 0.03);
                }
            }
            *best = best.min(start.elapsed().as_secs_f64() / 100.0);
        }
    }
    println!(
        "  {:<15} {n} parameters, portable {:.3} ms/update, {} {:.3} ms/update ({:.2}x)",
        "adam",
        best[0] * 1e3,
        eemu::train::adam_update_width(),
        best[1] * 1e3,
        best[0] / best[1]
    );
}
