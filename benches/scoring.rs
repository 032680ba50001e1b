//! Scoring + top-K throughput of batch inference (`eemu::infer::top_k`, the kernel `eemu infer`
//! runs per cluster): users x (S * d) against items x (S * d), training items masked, top-K per
//! user copied back to the host and ordered. Synthetic data (seeded).
//!
//!   cargo bench --bench scoring -- [--device cpu|cuda] [--users N] [--items I] [--shards S]
//!                                  [--dim d] [--top-k K] [--batch B] [--seen M]
//!
//! Defaults: the shape, 100k users x 50k items, S = 8, d = 128, K = 100, 50 seen items
//! per user; on the CPU only the first 8,192 users are scored unless --users is given (users/s
//! is what is reported).
use std::time::Instant;

use tch::{Device, Kind, Tensor};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |name: &str, default: usize| arg(&args, name).map_or(default, |v| v.parse().expect("a number"));
    let device = match arg(&args, "--device").as_deref() {
        Some("cuda") => Device::Cuda(0),
        Some("cpu") | None => Device::Cpu,
        Some(other) => panic!("--device cpu|cuda, got {other}"),
    };
    let users = num("--users", if device == Device::Cpu { 8192 } else { 100_000 });
    let (items, shards, dim, k) = (num("--items", 50_000), num("--shards", 8), num("--dim", 128), num("--top-k", 100));
    let batch = num("--batch", if device == Device::Cpu { 1024 } else { 8192 });
    let seen_per_user = num("--seen", 50);
    if device == Device::Cpu {
        tch::set_num_threads(std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
    }
    tch::manual_seed(0);
    let width = (shards * dim) as i64;
    let x = Tensor::randn([users as i64, width], (Kind::Float, device)) / shards as f64;
    let y = Tensor::randn([items as i64, width], (Kind::Float, device));
    let seen: Vec<Vec<u32>> = (0..users)
        .map(|u| {
            let mut v: Vec<u32> = (0..seen_per_user).map(|j| ((u * 7919 + j * 104_729) % items) as u32).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let refs: Vec<&[u32]> = seen.iter().map(Vec::as_slice).collect();
    // Warm-up (CUDA context, kernels, allocator) on one batch.
    let warm = batch.min(users);
    let _ = eemu::infer::top_k(&x.narrow(0, 0, warm as i64), &y, &refs[..warm], k, batch);
    if let Device::Cuda(_) = device {
        tch::Cuda::synchronize(0);
    }
    let start = Instant::now();
    let lists = eemu::infer::top_k(&x, &y, &refs, k, batch);
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(lists.len(), users);
    assert!(lists.iter().all(|l| l.len() == k));
    let flops = 2.0 * users as f64 * items as f64 * width as f64;
    println!(
        "scoring device={device:?} users={users} items={items} shards={shards} d={dim} width={width} k={k} batch={batch} seen={seen_per_user}: {seconds:.2} s, {:.0} users/s, {:.1} GFLOP/s",
        users as f64 / seconds,
        flops / seconds / 1e9
    );
}
