//! The commands that need libtorch, run by the `eemu-engine` binary (`eemu` hands them over).
//! Data commands are accepted too, so the engine can be called directly.
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use tch::Device;
use tracing::info;

use crate::cli::{execute, Cli, Command, EvaluateArgs, ForgetArgs, InferArgs, LayoutArg, Outcome, TrainArgs};
use crate::model::TwoTower;
use crate::store::{Prepared, ShardInfo, Store, MODEL_FILE};
use crate::train::{train_shard, ShardData, TrainLog};
use crate::version;

/// File name of a shard's training log, next to its model.
pub const TRAIN_LOG_FILE: &str = "train-log.json";

/// Runs any command; returns what goes to stdout.
pub fn execute_engine(cli: &Cli) -> Result<String> {
    if cli.version {
        return Ok(version::report() + "\n");
    }
    match &cli.command {
        Some(Command::Train(args)) => train_command(cli, args),
        Some(Command::Evaluate(args)) => evaluate_command(cli, args),
        Some(Command::Infer(args)) => infer_command(cli, args, false),
        Some(Command::Nightly(args)) => infer_command(cli, args, true),
        Some(Command::Forget(args)) => forget_command(cli, args),
        _ => match execute(cli)? {
            Outcome::Done(out) => Ok(out),
            Outcome::NeedsEngine => bail!("internal error: no engine implementation for this command"),
        },
    }
}

/// Instruction-set caps of libtorch's CPU kernels (MKL's matrix products, ATen's vectorized
/// kernels, oneDNN), set by [`pin_cpu_kernels`].
pub const CPU_KERNELS: [(&str, &str); 3] =
    [("MKL_CBWR", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")];

/// Caps libtorch's CPU kernels at AVX2 (x86-64 only), so that CPU results do not depend on the
/// CPU's instruction set. Left to themselves MKL, ATen and oneDNN use the widest instructions the
/// CPU has (AVX-512 on recent ones) and add up in another order: a shard trained on one machine
/// would not be byte-identical to the same shard trained on another, and a store moved between
/// machines would mix models a from-scratch run cannot reproduce. ATen and oneDNN then run the
/// same kernels on every CPU with AVX2; MKL promises the same results on Intel CPUs with AVX2 and
/// on other CPUs runs its reproducible mode on the branch it picks for the platform. A variable
/// already set, even to nothing, is left as it is: `MKL_CBWR= ATEN_CPU_CAPABILITY=avx512
/// ONEDNN_MAX_CPU_ISA=ALL` gives the native kernels (`MKL_CBWR=AUTO` is not native: it is MKL's
/// reproducible mode on its own branch). Call first thing in `main`: the libraries read these on
/// first use, and no other thread may be running.
pub fn pin_cpu_kernels() {
    if cfg!(target_arch = "x86_64") {
        for (name, value) in CPU_KERNELS {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    }
}

/// The CPU kernel caps in effect, as `NAME=value` pairs (`NAME=unset` where absent).
pub fn cpu_kernels() -> String {
    let value = |name: &str| std::env::var(name).unwrap_or_else(|_| "unset".to_string());
    CPU_KERNELS.iter().map(|(name, _)| format!("{name}={}", value(name))).collect::<Vec<_>>().join(" ")
}

/// The CPU's model name, family and model number, and its widest vector extension
/// (`/proc/cpuinfo`), e.g. "Intel(R) Xeon(R) Processor (family 6, model 167, avx512f)": CPU
/// results from machines without the same caps can differ by this. The family and model tell
/// generations apart where the name does not (virtual machines often report a bare "Intel(R)
/// Xeon(R) Processor"). None where `/proc/cpuinfo` cannot be read.
pub fn cpu_model() -> Option<String> {
    Some(describe_cpu(&std::fs::read_to_string("/proc/cpuinfo").ok()?))
}

/// `cpu_model` of a `/proc/cpuinfo` text (its first processor's entries).
fn describe_cpu(info: &str) -> String {
    let field = |name: &str| {
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let widest = ["avx512f", "avx2", "avx"].into_iter().find(|f| has(f)).unwrap_or("no avx");
    let number = |name: &str| field(name).unwrap_or_else(|| "?".to_string());
    format!(
        "{} (family {}, model {}, {widest})",
        field("model name").unwrap_or_else(|| "unknown".to_string()),
        number("cpu family"),
        number("model")
    )
}

/// What `cpu_model` recorded before it had the family and model ("NAME (EXT)"), for a record of
/// the present form; None for any other text.
pub fn cpu_model_without_generation(cpu: &str) -> Option<String> {
    let (name, rest) = cpu.rsplit_once(" (family ")?;
    let (_, widest) = rest.strip_suffix(')')?.rsplit_once(", ")?;
    Some(format!("{name} ({widest})"))
}

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(text: &str) -> Result<Device> {
    match text {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        _ => match text.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => bail!("--device must be auto, cpu, cuda or cuda:N, got {text:?}"),
        },
    }
}

fn cuda(i: usize) -> Result<Device> {
    if !tch::Cuda::is_available() {
        bail!("--device cuda: CUDA is not available on this machine (see `eemu --version`)");
    }
    if i >= tch::Cuda::device_count() as usize {
        bail!("--device cuda:{i}: only {} CUDA device(s)", tch::Cuda::device_count());
    }
    Ok(Device::Cuda(i))
}

/// The `--config` given, if any, once checked: rejected when its training settings differ from
/// those the store was ingested with.
fn check_config(cli: &Cli, prepared: &Prepared) -> Result<Option<crate::config::Config>> {
    let Some(path) = &cli.config else { return Ok(None) };
    let given = crate::cli::resolve_config(&cli.config)?;
    if given.training_identity() != prepared.config.training_identity() {
        bail!(
            "{}: its seed, [shards], [model] or [train] settings differ from those the store was ingested with; \
             lineage hashes depend on them, so re-run `eemu ingest` with this config first",
            path.display()
        );
    }
    Ok(Some(given))
}

/// Trains one shard and publishes its model and log under its lineage folder.
pub fn train_and_save(store: &Store, prepared: &Prepared, shard: &ShardInfo, device: Device) -> Result<TrainLog> {
    train_and_save_with(store, prepared, shard, device, &crate::progress::Progress::new(0, ""))
}

/// `train_and_save`, advancing `progress` by one per epoch.
fn train_and_save_with(
    store: &Store,
    prepared: &Prepared,
    shard: &ShardInfo,
    device: Device,
    progress: &crate::progress::Progress,
) -> Result<TrainLog> {
    let start = Instant::now();
    let config = &prepared.config;
    let data = ShardData::from_prepared(prepared, Some(shard.index));
    let mut model = data.new_model(prepared, device);
    let epochs = train_shard(&mut model, &data, &config.train, config.seed, |epoch, _, record| {
        info!(shard = shard.index, epoch, loss = format!("{:.4}", record.loss), validation_hr10 = ?record.validation_hr10, seconds = format!("{:.1}", record.seconds), "epoch");
        progress.inc(1);
        Ok(())
    })?;
    let log = TrainLog {
        shard: shard.index,
        lineage: shard.lineage.clone(),
        algorithm: config.train.algorithm,
        warmup_epochs: config.train.warmup_epochs,
        users: data.users.len(),
        rows: data.rows(),
        users_without_query: data.query.iter().filter(|q| q.is_empty()).count(),
        parameters: model.params.count(),
        device: format!("{device:?}"),
        cpu_kernels: (device == Device::Cpu).then(cpu_kernels),
        cpu: if device == Device::Cpu { cpu_model() } else { None },
        epochs,
        seconds: start.elapsed().as_secs_f64(),
    };
    let dir = store.shard_dir(shard.index, &shard.lineage);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A run killed while writing this shard's files (e.g. as another shard finished) left them here.
    crate::store::files::remove_stale_temp_files(&dir)?;
    crate::store::files::write_atomic(&dir.join(TRAIN_LOG_FILE), serde_json::to_string_pretty(&log)?.as_bytes())?;
    save_model(&model, &dir.join(MODEL_FILE))?;
    crate::fault::point("shard-trained");
    Ok(log)
}

/// Writes the model's parameters as safetensors, atomically (the model file is what marks a
/// shard as trained, so it goes last).
pub fn save_model(model: &TwoTower, path: &Path) -> Result<()> {
    write_safetensors_atomic(&model.named_cpu(), path)
}

/// Writes named CPU tensors as safetensors, atomically: a reader sees the old file or the
/// complete new one.
pub fn write_safetensors_atomic(named: &[(String, tch::Tensor)], path: &Path) -> Result<()> {
    crate::store::files::write_via_temp(path, |tmp| {
        tch::Tensor::write_safetensors(named, tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::File::open(tmp).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", tmp.display()))
    })
}

fn train_command(cli: &Cli, args: &TrainArgs) -> Result<String> {
    let store = Store::new(&args.store);
    let (manifest, prepared) = store.load()?;
    check_config(cli, &prepared)?;
    let device = parse_device(&args.device)?;
    if let Some(s) = args.shard {
        if s >= manifest.shards.len() {
            bail!("--shard {s}: the store has shards 0..{}", manifest.shards.len() - 1);
        }
    }
    let start = Instant::now();
    let (logs, skipped) = train_missing(&store, &manifest, &prepared, args.shard, device, args.jobs)?;
    Ok(train_summary(&logs, skipped, start.elapsed().as_secs_f64(), device))
}

/// Trains the shards (all, or only `only`) whose lineage has no model yet. Returns their logs
/// and how many already had a model.
fn train_missing(
    store: &Store,
    manifest: &crate::store::Manifest,
    prepared: &Prepared,
    only: Option<usize>,
    device: Device,
    jobs: Option<usize>,
) -> Result<(Vec<TrainLog>, usize)> {
    let todo: Vec<&ShardInfo> = manifest
        .shards
        .iter()
        .filter(|s| only.is_none_or(|want| want == s.index))
        .filter(|s| !store.is_trained(s))
        .collect();
    let skipped = manifest.shards.iter().filter(|s| only.is_none_or(|want| want == s.index)).count() - todo.len();
    info!(shards = todo.len(), already_trained = skipped, ?device, "training");
    let progress =
        crate::progress::Progress::new((todo.len() * prepared.config.train.epochs) as u64, "training (shard-epochs)");
    let logs: Vec<TrainLog> = if device == Device::Cpu {
        // One torch thread per shard and shards in parallel: fast for these small ops, and the
        // result does not depend on the machine's core count.
        tch::set_num_threads(1);
        let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;
        let results = Mutex::new(Vec::new());
        pool.install(|| {
            todo.par_iter().for_each(|s| {
                let r = train_and_save_with(store, prepared, s, device, &progress);
                results.lock().expect("no poisoned lock").push((s.index, r));
            })
        });
        let mut results = results.into_inner().expect("no poisoned lock");
        results.sort_by_key(|r| r.0);
        results.into_iter().map(|(_, r)| r).collect::<Result<_>>()?
    } else {
        todo.iter().map(|s| train_and_save_with(store, prepared, s, device, &progress)).collect::<Result<_>>()?
    };
    progress.finish();
    Ok((logs, skipped))
}

fn train_summary(logs: &[TrainLog], skipped: usize, seconds: f64, device: Device) -> String {
    let mut out = format!(
        "trained {} shard(s) in {seconds:.1} s on {device:?}; {skipped} already had a model for their lineage hash\n",
        logs.len(),
    );
    for log in logs {
        let last = log.epochs.last();
        out.push_str(&format!(
            "  shard {}: {} users, {} rows, {} epochs, final loss {:.4}, validation HR@10 {}, {:.1} s\n",
            log.shard,
            log.users,
            log.rows,
            log.epochs.len(),
            last.map_or(f64::NAN, |e| e.loss),
            last.and_then(|e| e.validation_hr10).map_or("-".into(), |v| format!("{v:.4}")),
            log.seconds
        ));
    }
    out
}

/// Deletes the runs that no longer derive from the current data and models (retention:
/// `infer.keep_superseded_runs`). Returns the deleted folders.
fn purge_runs(
    runs_dir: &Path,
    p: &Prepared,
    models: &[crate::infer::ShardModel],
    config: &crate::config::Config,
    out: &mut String,
) -> Result<Vec<String>> {
    let lineages: Vec<&str> = models.iter().map(|m| m.lineage.as_str()).collect();
    let hashes = models.iter().map(|m| (m.index, m.model_sha256.clone())).collect();
    let removed =
        crate::verify::purge_superseded_runs(runs_dir, &p.id, &lineages, &hashes, config.infer.keep_superseded_runs)?;
    let mut names = Vec::new();
    for run in removed {
        info!(run = %run.display(), "deleted a run of superseded data");
        out.push_str(&format!("deleted superseded run {}\n", run.display()));
        names.push(run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    }
    Ok(names)
}

/// `eemu infer` (`nightly` false), or `eemu nightly`: applies pending deletion requests, trains
/// missing shards, infers, and writes the unlearning report of newly applied requests.
fn infer_command(cli: &Cli, args: &InferArgs, nightly: bool) -> Result<String> {
    let total = Instant::now();
    let store = Store::new(&args.store);
    let mut out = String::new();
    let mut recompute = crate::forget::Recompute::default();
    if nightly {
        let applied = crate::forget::apply_pending(&store)?;
        out.push_str(&applied_summary(&applied));
        recompute.seconds_apply = applied.seconds;
    }
    let (manifest, prepared) = store.load()?;
    if !nightly {
        let pending = crate::forget::Ledger::load(&store)?.pending(manifest.ledger_applied).count();
        if pending > 0 {
            tracing::warn!(
                entries = pending,
                "deletion requests are pending in the ledger; `eemu nightly` applies them"
            );
        }
    }
    // [cluster] and [infer] may come from --config; training settings must be the store's.
    let mut config = check_config(cli, &prepared)?.unwrap_or_else(|| prepared.config.clone());
    if let Some(layout) = args.layout {
        config.infer.layout = match layout {
            LayoutArg::Nested => crate::config::LayoutChoice::Nested,
            LayoutArg::Flat => crate::config::LayoutChoice::Flat,
        };
    }
    let device = parse_device(&args.device)?;
    if nightly {
        let start = Instant::now();
        let (logs, skipped) = train_missing(&store, &manifest, &prepared, None, device, args.jobs)?;
        out.push_str(&train_summary(&logs, skipped, start.elapsed().as_secs_f64(), device));
        recompute.trained = logs.iter().map(|l| (l.shard, l.seconds)).collect();
        recompute.seconds_train = start.elapsed().as_secs_f64();
    }
    let threads = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let start = Instant::now();
    let models = crate::infer::load_models(&store, &manifest, &prepared, device)?;
    let t_load = start.elapsed().as_secs_f64();
    let run_id = crate::infer::run_id(&prepared, &config, &models);
    let runs_dir = store.root().join(crate::infer::RUNS_DIR);
    if crate::output::run_complete(&runs_dir, &run_id) {
        // It is the newest run of the current data, whatever LATEST said before.
        crate::store::files::write_atomic(&runs_dir.join(crate::infer::LATEST_FILE), format!("{run_id}\n").as_bytes())?;
        recompute.runs_deleted = purge_runs(&runs_dir, &prepared, &models, &config, &mut out)?;
        out.push_str(&format!(
            "run {run_id} is already complete (same data, models and settings): {}\n",
            runs_dir.join(&run_id).display()
        ));
    } else {
        let result = crate::infer::infer(&store, &prepared, &models, &config, threads)?;
        let folder = crate::infer::publish(&runs_dir, &run_id, &prepared, &config, &result, device, t_load, total)?;
        crate::fault::point("run-published");
        recompute.runs_deleted = purge_runs(&runs_dir, &prepared, &models, &config, &mut out)?;
        let personalized = result.recs.iter().filter(|r| r.source == crate::output::Source::Personalized).count();
        out.push_str(&format!(
            "run {run_id}: top-{} lists for {} users ({personalized} personalized, {} popularity fallback), {} clusters ({:?} consensus), {:.1} s on {device:?}\n  {}\n",
            config.infer.top_k,
            result.recs.len(),
            result.recs.len() - personalized,
            result.clusters,
            result.consensus,
            total.elapsed().as_secs_f64(),
            folder.join(crate::output::RECOMMENDATIONS_FILE).display()
        ));
    }
    recompute.seconds_infer = start.elapsed().as_secs_f64();
    if nightly {
        recompute.run_id = Some(run_id);
        recompute.seconds_total = total.elapsed().as_secs_f64();
        if let Some((path, text)) = crate::forget::write_report(&store, &recompute)? {
            out.push_str(&text);
            out.push_str(&format!("report: {}\n", path.display()));
        }
    }
    Ok(out)
}

/// What applying the ledger did, with the ids of requests that matched nothing (they are
/// printed here and never stored).
fn applied_summary(a: &crate::forget::Applied) -> String {
    if a.entries.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "applied ledger entr{} {}: {} row(s) and {} user(s) removed\n",
        if a.entries.len() == 1 { "y" } else { "ies" },
        a.entries.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        a.rows_removed,
        a.users_removed
    );
    if !a.not_found.is_empty() {
        out.push_str(&format!("{} request(s) matched nothing (unknown id, or deleted before):\n", a.not_found.len()));
        for nf in &a.not_found {
            let r = &nf.request;
            out.push_str(&format!(
                "  {}: user {}{}{}\n",
                r.at,
                r.user_id,
                r.item_id.as_ref().map(|i| format!(", item {i}")).unwrap_or_default(),
                r.request_id.as_ref().map(|i| format!(" (request {i})")).unwrap_or_default()
            ));
        }
    }
    out
}

/// `eemu forget`: records the requests in the ledger, then runs the nightly pipeline (apply,
/// retrain changed shards, infer, purge, report) unless `--defer`.
fn forget_command(cli: &Cli, args: &ForgetArgs) -> Result<String> {
    let store = Store::new(&args.run.store);
    let s = crate::forget::submit(&store, &args.requests)?;
    let mut out = if s.appended {
        format!("recorded {} request(s) from {} as ledger entry {}\n", s.requests, args.requests.display(), s.seq)
    } else {
        format!(
            "{} is already in the ledger as entry {} ({:?}); it is not applied twice, resuming any unfinished work\n",
            args.requests.display(),
            s.seq,
            s.state
        )
    };
    if args.defer {
        out.push_str("deferred: the next `eemu nightly` (or `eemu forget`) applies it\n");
        return Ok(out);
    }
    out.push_str(&infer_command(cli, &args.run, true)?);
    Ok(out)
}

fn evaluate_command(cli: &Cli, args: &EvaluateArgs) -> Result<String> {
    use crate::eval::METHODS;
    if let Some(bad) = args.methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
        bail!("--methods: unknown method {bad:?} (known: {})", METHODS.join(", "));
    }
    if args.eval_every == 0 {
        bail!("--eval-every must be at least 1");
    }
    if args.batch_clusters.contains(&0) {
        bail!("--batch-clusters: every cluster count must be at least 1");
    }
    if let Some(bad) = args.adapt_learning_rates.iter().find(|&&lr| !(lr.is_finite() && lr > 0.0)) {
        bail!("--adapt-learning-rates: every step size must be a positive number, got {bad}");
    }
    if args.adapt_steps.contains(&0) {
        bail!("--adapt-steps: every step count must be at least 1");
    }
    if let Some(bad) = args.adapt_temperatures.iter().find(|&&t| !(t.is_finite() && t > 0.0)) {
        bail!("--adapt-temperatures: every temperature must be a positive number, got {bad}");
    }
    if args.adapt_set_sizes.contains(&0) {
        bail!("--adapt-set-sizes: every set size must be at least 1");
    }
    if args.adapt_negatives.contains(&0) {
        bail!("--adapt-negatives: every count must be at least 1");
    }
    let (prepared, split_files) = match &args.train {
        Some(train) => {
            let config = crate::cli::resolve_config(&cli.config)?;
            let (valid, test) =
                (args.valid.as_ref().expect("clap requires"), args.test.as_ref().expect("clap requires"));
            let files = crate::data::split_files::SplitFiles { train, valid, test, items: args.items.as_deref() };
            let (dataset, split) = crate::data::split_files::read(&files, &config.ingest)?;
            let mut provenance = Vec::new();
            for path in [Some(train), Some(valid), Some(test), args.items.as_ref()].into_iter().flatten() {
                provenance.push(serde_json::json!({
                    "path": path.display().to_string(),
                    "sha256": crate::store::files::sha256_file(path)?,
                }));
            }
            (Prepared::from_split(dataset, split, &config), Some(provenance))
        }
        None => {
            let (_, mut prepared) = Store::new(&args.store).load()?;
            // [adapt], [cluster] and [infer] act after training (eemu-adapt, eemu-batch) and come
            // from --config, as in `eemu infer`; what the store's data depends on may not differ.
            if let (Some(path), Some(given)) = (&cli.config, check_config(cli, &prepared)?) {
                if given.split != prepared.config.split || given.ingest != prepared.config.ingest {
                    bail!(
                        "{}: its [split] or [ingest] settings differ from those the store was ingested with, and \
                         the store's split depends on them; re-run `eemu ingest` with this config first",
                        path.display()
                    );
                }
                prepared.config = given;
            }
            (prepared, None)
        }
    };
    let device = parse_device(&args.device)?;
    if device == Device::Cpu {
        tch::set_num_threads(1);
    }
    let options = crate::eval::EvalOptions {
        epochs: args.epochs.unwrap_or(prepared.config.train.epochs),
        eval_every: args.eval_every,
        methods: args.methods.clone(),
        device,
        jobs: if device == Device::Cpu {
            args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        } else {
            1
        },
        batch_clusters: args.batch_clusters.clone(),
        adapt_grid: crate::eval::AdaptSetting::grid(
            &crate::eval::AdaptGrid {
                learning_rates: &args.adapt_learning_rates,
                steps: &args.adapt_steps,
                temperatures: &args.adapt_temperatures,
                set_sizes: &args.adapt_set_sizes,
                negatives: &args.adapt_negatives,
                scopes: &args.adapt_scopes,
                validation_as_negative: args.adapt_validation_as_negative,
            },
            &prepared.config.adapt,
        )?,
        checkpoint_dir: args.checkpoint_dir.clone(),
    };
    if let Some(dir) = &options.checkpoint_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--checkpoint-dir: cannot create {}", dir.display()))?;
        crate::store::files::remove_stale_temp_files(dir)?;
    }
    let start = Instant::now();
    let targets = crate::eval::Targets::new(&prepared)?;
    let results = crate::eval::evaluate(&prepared, &targets, &options)?;
    if let Some(path) = &args.ranks_out {
        crate::eval::write_ranks(path, &prepared, &targets, &results)?;
    }
    let paired = crate::eval::paired(&prepared, &targets, &results)?;
    let split_rule = if split_files.is_some() {
        "supplied by the user: --train, --valid, --test files"
    } else if prepared.dataset.interactions.timestamp.is_some() {
        "leave-one-out by timestamp: last = test, second-last = validation, ties keep input order"
    } else {
        "leave-one-out without timestamps: test and validation drawn at random, keyed by (seed, user id)"
    };
    let report = serde_json::json!({
        "store": if args.train.is_some() { serde_json::Value::Null } else { args.store.display().to_string().into() },
        "dataset": prepared.id,
        "split": {
            "rule": split_rule,
            "seed": prepared.config.seed,
            "min_interactions": prepared.config.split.min_interactions,
            "files": split_files,
        },
        "config_hash": prepared.config.hash(),
        "seed": prepared.config.seed,
        "train": prepared.config.train,
        "epochs": options.epochs,
        "eval_every": options.eval_every,
        "device": format!("{device:?}"),
        "cpu": cpu_model(),
        "cpu_kernels": (device == Device::Cpu).then(cpu_kernels),
        "seconds": start.elapsed().as_secs_f64(),
        "results": results,
        "paired": paired,
    });
    crate::store::files::write_atomic(&args.out, (serde_json::to_string_pretty(&report)? + "\n").as_bytes())?;
    let mut out = crate::eval::table(&results);
    let t = &prepared.config.train;
    if t.warmup_epochs > 0 {
        out.push_str(&format!(
            "(warm-up: the first {} epochs of every trained method are plain training at {}, then its algorithm \
             at {}; train.warmup_epochs)\n",
            t.warmup_epochs, t.warmup_learning_rate, t.learning_rate
        ));
    }
    if !paired.is_empty() {
        out.push('\n');
        out.push_str(&crate::compare::table(&paired, &crate::compare::Settings::default()));
    }
    Ok(format!("{out}results written to {}\n", args.out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processors' entries as `/proc/cpuinfo` lists them; only the first is read. "model"
    /// must not be taken from the "model name" line that precedes it.
    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\
        model name\t: Intel(R) Xeon(R) Processor\nmodel\t\t: 167\nflags\t\t: fpu sse2 avx avx2 avx512f\n\n\
        processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: Other\nflags\t\t: fpu\n";

    #[test]
    fn the_cpu_is_described_by_name_family_model_and_widest_extension() {
        assert_eq!(describe_cpu(CPUINFO), "Intel(R) Xeon(R) Processor (family 6, model 167, avx512f)");
        let no_avx = CPUINFO.replace("avx avx2 avx512f", "sse4_2");
        assert_eq!(describe_cpu(&no_avx), "Intel(R) Xeon(R) Processor (family 6, model 167, no avx)");
        assert_eq!(describe_cpu("flags\t: avx2\n"), "unknown (family ?, model ?, avx2)");
    }

    #[test]
    fn the_earlier_record_of_a_cpu_drops_its_family_and_model() {
        let now = describe_cpu(CPUINFO);
        assert_eq!(cpu_model_without_generation(&now).as_deref(), Some("Intel(R) Xeon(R) Processor (avx512f)"));
        // An earlier record is not of the present form.
        assert_eq!(cpu_model_without_generation("Intel(R) Xeon(R) Processor (avx512f)"), None);
        assert_eq!(cpu_model_without_generation("AMD EPYC (family 25, model 17, avx2"), None);
    }
}
