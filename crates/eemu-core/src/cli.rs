//! Command line: what was typed (clap structs) and how it resolves into validated settings.
//! Nothing below this module reads flags or the environment.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::data::split::Split;
use crate::data::synth::{self, SynthFormat, SynthParams};
use crate::ingest::{self, IngestRequest, InputFormat};
use crate::status;
use crate::store::Store;

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 failure, 2 invalid command line or config, 3 invalid input data.
Logs go to stderr (EEMU_LOG=debug for more); results go to stdout.";

/// eemu: batch inference for exactly unlearnable recommendation models (EEMU).
///
/// Interactions are split into shards by a keyed hash of each row, so deleting rows retrains only
/// the shards that held them. Typical flow: `eemu ingest` a dataset into a store, inspect it with
/// `eemu status`, run `eemu nightly` (train the shard models, write top-K lists for every user),
/// delete data with `eemu forget` and prove it with `eemu verify`; compare methods with
/// `eemu evaluate`, and tell differences from noise with `eemu compare`. `eemu synth` generates
/// demo data.
#[derive(Debug, Parser)]
#[command(name = "eemu", disable_version_flag = true, after_help = AFTER_HELP)]
pub struct Cli {
    /// Print eemu's version, the libtorch version and whether CUDA is available.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// TOML config file (default: built-in defaults, the values configs/default.toml documents).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (repeat for trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic dataset (taste groups, power-law popularity, user and item features).
    Synth(SynthArgs),
    /// Read a dataset into a store: split, shard, compute lineage hashes; atomic.
    Ingest(IngestArgs),
    /// Show a store: dataset, features, shards with lineage hashes and training state, coverage.
    Status(StatusArgs),
    /// Write the store's evaluation split as train.csv, valid.csv and test.csv (original ids),
    /// for other tools or for `eemu evaluate --train/--valid/--test`.
    ExportSplit(ExportSplitArgs),
    /// Train the shard models whose lineage hash has no model yet (libtorch; CPU or CUDA).
    Train(TrainArgs),
    /// Compare RETRAIN, sharded Mean, EEMU and EEMU with per-user adaptation (leave-one-out,
    /// full ranking, HR@K / NDCG@K, epoch chosen on validation).
    Evaluate(Box<EvaluateArgs>),
    /// Paired comparison of methods from `eemu evaluate --ranks-out` files (one run or several):
    /// relative HR@K / NDCG@K differences with bootstrap intervals over users, McNemar's test.
    #[command(after_help = COMPARE_HELP)]
    Compare(CompareArgs),
    /// Check that every stored artifact (dataset files, shard models, labels, runs) derives from
    /// the current data: recomputes every lineage hash; exit code 1 when anything does not match.
    /// Also lists the device and CPU kernel caps each shard was trained under: a from-scratch
    /// retraining reproduces a model file only under its own.
    Verify(StatusArgs),
    /// Batch inference (paper Algorithm 3): cluster users, adapt one model per (shard, cluster),
    /// write top-K lists for every user to <store>/runs/<run-id>/ (Parquet). Needs trained shards.
    Infer(InferArgs),
    /// The nightly job: apply pending deletion requests (the ledger), train the shards whose
    /// lineage hash has no model, then `infer`. Idempotent: a run whose inputs are unchanged is
    /// found complete and not redone.
    Nightly(InferArgs),
    /// Exact unlearning of a batch of deletion requests: record them durably in the store's
    /// ledger, remove the rows, retrain only the shards whose lineage hash changed, re-cluster
    /// only those shards, run inference again, delete every artifact of the old data, and write
    /// an unlearning report (<store>/reports/). Safe to rerun after a crash.
    #[command(after_help = FORGET_HELP)]
    Forget(ForgetArgs),
}

const FORGET_HELP: &str = "\
Request file (CSV with a header, or Parquet):
  user_id     required; the user's original id
  item_id     optional; set: delete that interaction (every row of the pair); empty or absent:
              delete the user (every interaction and the user's features)
  request_id  optional; your ticket id, kept in the ledger and the report
Requests naming ids that are not in the dataset (unknown, or deleted before) are listed in the
output and counted in the report, never silently dropped. Submitting the same file again does not
apply it twice. `eemu verify` checks the result.

Exit codes: 0 success, 1 failure (rerun the same command: it resumes), 2 invalid command line or
config, 3 invalid request file (the message names the file, line and column).";

const COMPARE_HELP: &str = "\
Methods evaluated on the same split rank the same users' test items, so their difference is
measured on paired data: each bootstrap resample draws users with replacement and recomputes
both methods on the same draw. Intervals are 95% percentile intervals; `--seed` fixes them.
Runs evaluated separately (e.g. at different learning rates) are compared by naming several
files; their methods are then called LABEL:METHOD:

  eemu compare --ranks r5e-4=retrain.parquet --ranks r2e-3=tuned.parquet --baseline r2e-3:mean

One training can sit far from another at a different seed. Runs of one method at several seeds
(same split) are pooled by joining their names with +: each user's hit is then the mean over the
runs, and each resample also draws the runs with replacement, so the interval covers the seed
spread as well as the users (coarsely with two or three runs); the p-value is then that of a
paired sign-flip test of the mean hit, which treats the runs as fixed:

  eemu compare --ranks m0=mean-s0.parquet --ranks m1=mean-s1.parquet --ranks f0=fomaml-s0.parquet \\
    --ranks f1=fomaml-s1.parquet --baseline m0:mean+m1:mean --methods f0:eemu-adapt+f1:eemu-adapt

A label ending in * stands for every label that starts with what precedes it, in the order of the
--ranks files: the same comparison is --baseline 'm*:mean' --methods 'f*:eemu-adapt' (quote the
names so the shell leaves the * alone).

Each side's runs are drawn apart unless --paired-runs says the i-th runs of the two sides belong
together (e.g. trained at the same seed, which fixes the shard assignment); each resample draws
the same positions on both sides, which leaves out the part of the seed spread the two share.
With two * names, --paired-runs also checks that their labels end alike, run by run (f1, f2 with
m1, m2).

Exit codes: 0 success, 1 failure, 2 invalid command line, 3 invalid rank file (the message names
the file, row and column).";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Rank file of `eemu evaluate --ranks-out` (Parquet, or CSV with columns method, user_id,
    /// rank), as FILE or LABEL=FILE; repeat for several. With several files each method is named
    /// LABEL:METHOD, LABEL defaulting to the file name without its extension
    #[arg(long = "ranks", value_name = "[LABEL=]FILE", required = true)]
    pub ranks: Vec<String>,
    /// Baselines, comma-separated; a name may leave out its LABEL: when that is unambiguous, and
    /// A+B pools runs (e.g. seeds) into one (default: retrain and mean, where the files hold them)
    #[arg(long, value_parser = parse_names)]
    pub baseline: Option<Names>,
    /// Methods to compare with each baseline, comma-separated, A+B pooling runs as for
    /// --baseline (default: all the others). Commas inside parentheses belong to the name, as in
    /// eemu-adapt(lr=0.0002,steps=1); PREFIX*:METHOD pools every run of METHOD whose label starts
    /// with PREFIX
    #[arg(long, value_parser = parse_names)]
    pub methods: Option<Names>,
    /// Cut-off K of HR@K and NDCG@K
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Bootstrap resamples
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Seed of the bootstrap (same seed and files, same intervals)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Match pooled runs by position: the i-th run of a method's A+B goes with the i-th of the
    /// baseline's (name them in the same seed order), and each resample draws the same positions
    /// on both sides instead of drawing each side's runs apart. Where both sides pool several
    /// runs, they must pool as many
    #[arg(long)]
    pub paired_runs: bool,
    /// JSON file for the results (written atomically)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Deletion requests (CSV or Parquet; see below)
    #[arg(long, value_name = "FILE")]
    pub requests: PathBuf,
    /// Only record the requests in the ledger; the next `eemu nightly` (or `forget`) applies them
    #[arg(long)]
    pub defer: bool,
    #[command(flatten)]
    pub run: InferArgs,
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Store folder
    #[arg(long, default_value = "eemu-store")]
    pub store: PathBuf,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output layout (default: infer.layout of the config): nested = one row per user with a list
    /// of (item_id, score, rank); flat = one row per (user, rank)
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// CPU threads: shard models trained at once (nightly) and libtorch threads of inference
    /// (default: number of cores)
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// `--layout` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    Nested,
    Flat,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Store folder (ingested with [split] mode = "leave-one-out").
    #[arg(long, default_value = "eemu-store")]
    pub store: PathBuf,
    /// Epochs to train each method (default: train.epochs of the store's config).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Evaluate on validation every N epochs (the best of these epochs is reported).
    #[arg(long, default_value_t = 1)]
    pub eval_every: usize,
    /// Methods, comma-separated: popularity (items by training degree, no model: the floor),
    /// retrain, mean, eemu, eemu-adapt (per-user adaptation), eemu-batch (batch mode with each of
    /// --batch-clusters), and mean-adapt (not run by default: Mean's models with the same per-user
    /// adaptation settings as eemu-adapt, a control for what the adaptation gives without
    /// meta-training; it reads Mean's checkpoint where there is one).
    #[arg(long, value_delimiter = ',', default_value = "popularity,retrain,mean,eemu,eemu-adapt,eemu-batch")]
    pub methods: Vec<String>,
    /// Consensus cluster counts K of eemu-batch (batch mode, paper Algorithm 3), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "10,25,50")]
    pub batch_clusters: Vec<usize>,
    /// Step sizes of per-user adaptation to try for eemu-adapt, comma-separated (default:
    /// adapt.learning_rate of the config). Every rate is tried with every --adapt-steps count,
    /// --adapt-temperatures value, --adapt-set-sizes size and --adapt-scopes scope on the same
    /// models; the eemu-adapt row is the setting with the best validation HR@10 (the first listed
    /// on a tie), and with more than one setting each is also listed as eemu-adapt(lr=..,steps=..).
    /// The test item never takes part in the choice.
    #[arg(long, value_delimiter = ',', value_name = "LRS")]
    pub adapt_learning_rates: Vec<f64>,
    /// Step counts of per-user adaptation to try for eemu-adapt, comma-separated (default:
    /// adapt.steps of the config). One adaptation per rate is read after each count.
    #[arg(long, value_delimiter = ',', value_name = "STEPS")]
    pub adapt_steps: Vec<usize>,
    /// Temperatures T of the adaptation-set sampling to try for eemu-adapt, comma-separated
    /// (default: adapt.temperature of the config). Items of the user's history are drawn with
    /// p_i ~ exp((1/d_i) / T), d_i = the item's training degree: the reference's 0.01 draws
    /// almost only the user's rarest items, a large T (e.g. 100) nearly uniformly. Candidate rows
    /// name a value other than the config's as T=...
    #[arg(long, value_delimiter = ',', value_name = "TS")]
    pub adapt_temperatures: Vec<f64>,
    /// Adaptation-set sizes (items drawn with replacement from the user's history) to try for
    /// eemu-adapt, comma-separated (default: adapt.set_size of the config). Candidate rows name a
    /// size other than the config's as set=...
    #[arg(long, value_delimiter = ',', value_name = "SIZES")]
    pub adapt_set_sizes: Vec<usize>,
    /// Uniform negatives drawn into each adaptation set, to try for eemu-adapt, comma-separated
    /// (default: adapt.negatives of the config, 0 there meaning one per item, as the reference).
    /// Each is at most the set size; the set's items are paired with them in turn. Every negative
    /// may be an item the user will like (the test item is not kept out). Candidate rows name a
    /// count other than the config's as neg=...
    #[arg(long, value_delimiter = ',', value_name = "COUNTS")]
    pub adapt_negatives: Vec<usize>,
    /// Let each user's validation item be drawn as an adaptation negative, as the test item can
    /// be. By default it is kept out, as in the reference code; then the adaptation can push the
    /// test item down but never the validation item. Applies to every setting tried.
    #[arg(long)]
    pub adapt_validation_as_negative: bool,
    /// Parameters the per-user adaptation moves, to try for eemu-adapt, comma-separated
    /// (default: adapt.scope of the config): all (both towers, as Algorithm 2 and the
    /// reference), user (the user side only; every item keeps the shard model's vector) or
    /// vector (each user's final vector alone, on the user's own set; towers and items stay).
    /// Candidate rows name a scope other than the config's as scope=...
    #[arg(long, value_delimiter = ',', value_name = "SCOPES")]
    pub adapt_scopes: Vec<crate::config::AdaptScope>,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Shard models trained at once on the CPU (default: number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// JSON file for the results.
    #[arg(long, default_value = "evaluation.json")]
    pub out: PathBuf,
    /// Parquet file with one row per (method, user): method, user_id, 0-based test rank (`rank`)
    /// and validation rank (`valid_rank`, null for a user without a validation item).
    #[arg(long, value_name = "FILE")]
    pub ranks_out: Option<PathBuf>,
    /// Folder for checkpoints (created): after every evaluation each trained method's state is
    /// written to DIR/<method>.safetensors, and a later run with the same folder, data, training
    /// settings (seed, [shards], [model], [train]; [adapt] may differ), device and --eval-every
    /// goes on from there, for as many --epochs as it asks (on
    /// the CPU with the numbers an uninterrupted run gives). For long runs that may be stopped,
    /// and for extending a finished run. DIR/eemu-adapt.json keeps the ranks of each per-user
    /// adaptation setting of the chosen eemu models, read back while they stay chosen
    /// (DIR/mean-adapt.json those of mean-adapt). The files
    /// hold models trained on the data and are not part of the store: `eemu forget` leaves them,
    /// so delete the folder after a deletion.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Evaluate on a supplied split instead of a store: training rows (TSV, CSV or Parquet;
    /// columns user_id, item_id, optional timestamp, named as in [ingest]). Needs --valid and
    /// --test; the settings come from --config.
    #[arg(long, value_name = "FILE", requires_all = ["valid", "test"])]
    pub train: Option<PathBuf>,
    /// Validation rows of a supplied split (one per user at most).
    #[arg(long, value_name = "FILE", requires = "train")]
    pub valid: Option<PathBuf>,
    /// Test rows of a supplied split (one per user at most; users without one are not evaluated).
    #[arg(long, value_name = "FILE", requires = "train")]
    pub test: Option<PathBuf>,
    /// Candidate items to rank over (column item_id); default: every item of the three files.
    #[arg(long, value_name = "FILE", requires = "train")]
    pub items: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportSplitArgs {
    /// Store folder.
    #[arg(long, default_value = "eemu-store")]
    pub store: PathBuf,
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Store folder.
    #[arg(long, default_value = "eemu-store")]
    pub store: PathBuf,
    /// Train only this shard (default: every shard without a model for its lineage hash).
    #[arg(long)]
    pub shard: Option<usize>,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Shards trained at once on the CPU (each on one thread; default: number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (created); files: interactions, users, items.
    #[arg(long, default_value = "demo-data/synth")]
    pub out: PathBuf,
    /// Seed: the same seed and sizes give byte-identical files.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Number of items.
    #[arg(long, default_value_t = 800)]
    pub items: usize,
    /// Interactions per user, as MIN..MAX (inclusive), drawn uniformly per user.
    #[arg(long, default_value = "20..60", value_parser = parse_range)]
    pub interactions_per_user: (usize, usize),
    /// Number of planted taste groups.
    #[arg(long, default_value_t = 8)]
    pub groups: usize,
    /// File format.
    #[arg(long, value_enum, default_value_t = SynthFileFormat::Csv)]
    pub format: SynthFileFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SynthFileFormat {
    Csv,
    Parquet,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Input: a MovieLens folder, or the interactions file (CSV/TSV or Parquet).
    #[arg(long, value_name = "PATH")]
    pub input: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,
    /// User feature table, columns declared in [ingest] user_features. Generic formats: the user
    /// catalog. MovieLens folders: extra features, one row for every user of the folder.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// Item feature table, columns declared in [ingest] item_features. Generic formats: the item
    /// catalog. MovieLens folders: extra features (title embeddings from
    /// scripts/title-embeddings.py, say), one row for every movie of the folder.
    #[arg(long, value_name = "FILE")]
    pub items: Option<PathBuf>,
    /// Store folder (created if missing; its current dataset is replaced).
    #[arg(long, default_value = "eemu-store")]
    pub store: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Store folder.
    #[arg(long, default_value = "eemu-store")]
    pub store: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("expected MIN..MAX, got {s:?}"))?;
    let a = a.trim().parse().map_err(|_| format!("expected MIN..MAX with integers, got {s:?}"))?;
    let b = b.trim().parse().map_err(|_| format!("expected MIN..MAX with integers, got {s:?}"))?;
    Ok((a, b))
}

/// Loads the config named on the command line, or the built-in defaults.
pub fn resolve_config(path: &Option<PathBuf>) -> Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::default()),
    }
}

/// What the front binary does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished; the text goes to stdout.
    Done(String),
    /// The command needs libtorch: hand it to `eemu-engine`.
    NeedsEngine,
}

/// The `eemu-engine` binary: `EEMU_ENGINE`, or the file next to the running executable.
pub fn engine_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("EEMU_ENGINE") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("eemu-engine"))
}

/// Runs a command that needs no libtorch, or says it needs the engine.
pub fn execute(cli: &Cli) -> Result<Outcome> {
    if cli.version {
        return Ok(Outcome::NeedsEngine);
    }
    let Some(command) = &cli.command else {
        bail!("no command given; see `eemu --help`");
    };
    if matches!(
        command,
        Command::Train(_) | Command::Evaluate(_) | Command::Infer(_) | Command::Nightly(_) | Command::Forget(_)
    ) {
        return Ok(Outcome::NeedsEngine);
    }
    execute_data(&cli.config, command).map(Outcome::Done)
}

/// The data commands: synth, ingest, status, export-split, compare, verify.
fn execute_data(config_path: &Option<PathBuf>, command: &Command) -> Result<String> {
    match command {
        Command::Synth(a) => {
            let params = SynthParams {
                users: a.users,
                items: a.items,
                min_interactions: a.interactions_per_user.0,
                max_interactions: a.interactions_per_user.1,
                groups: a.groups,
                seed: a.seed,
                ..SynthParams::default()
            };
            let format = match a.format {
                SynthFileFormat::Csv => SynthFormat::Csv,
                SynthFileFormat::Parquet => SynthFormat::Parquet,
            };
            let data = synth::generate(&params)?;
            let paths = synth::write(&data, &a.out, format)?;
            let mut out = format!(
                "wrote {} users, {} items, {} interactions (seed {}):\n",
                data.user_ids.len(),
                data.item_ids.len(),
                data.interactions.len(),
                a.seed
            );
            for p in paths {
                out.push_str(&format!("  {}\n", p.display()));
            }
            Ok(out)
        }
        Command::Ingest(a) => {
            let config = resolve_config(config_path)?;
            let request = IngestRequest {
                format: a.format,
                input: a.input.clone(),
                users: a.users.clone(),
                items: a.items.clone(),
            };
            let store = Store::new(&a.store);
            let manifest = ingest::ingest(&request, &config, &store)?;
            Ok(format!(
                "ingested {} interactions ({} users, {} items) into {} as dataset {}, {} shards\n",
                manifest.dataset.interactions,
                manifest.dataset.users,
                manifest.dataset.items,
                a.store.display(),
                manifest.dataset.id,
                manifest.shards.len()
            ))
        }
        Command::Status(a) => {
            let store = Store::new(&a.store);
            let manifest = store.manifest()?;
            if a.json {
                Ok(serde_json::to_string_pretty(&status::json(&store, &manifest))? + "\n")
            } else {
                Ok(status::text(&store, &manifest))
            }
        }
        Command::ExportSplit(a) => {
            let (_, prepared) = Store::new(&a.store).load()?;
            let paths = crate::data::split_files::write(&prepared.dataset, &prepared.split, &a.out)?;
            let count = |s: Split| prepared.split.iter().filter(|&&x| x == s).count();
            Ok(format!(
                "wrote {} training, {} validation and {} test rows:\n  {}\n  {}\n  {}\n",
                count(Split::Train),
                count(Split::Valid),
                count(Split::Test),
                paths[0].display(),
                paths[1].display(),
                paths[2].display()
            ))
        }
        Command::Compare(a) => {
            let settings =
                crate::compare::Settings { k: a.k, resamples: a.resamples, seed: a.seed, paired_runs: a.paired_runs };
            let names = |n: &Option<Names>| n.as_ref().map(|n| n.0.clone()).unwrap_or_default();
            let (methods, baseline) = (names(&a.methods), names(&a.baseline));
            crate::compare::run(&a.ranks, &methods, &baseline, &settings, a.out.as_deref())
        }
        Command::Verify(a) => {
            let report = crate::verify::verify(&Store::new(&a.store))?;
            let text = if a.json { serde_json::to_string_pretty(&report)? + "\n" } else { report.text() };
            if report.ok() {
                Ok(text)
            } else {
                bail!("verification failed\n{text}")
            }
        }
        Command::Train(_) | Command::Evaluate(_) | Command::Infer(_) | Command::Nightly(_) | Command::Forget(_) => {
            bail!("this command runs in eemu-engine")
        }
    }
}

/// Method names given as one comma-separated list.
#[derive(Debug, Clone, PartialEq)]
pub struct Names(pub Vec<String>);

/// A comma-separated list of method names, split only at commas outside parentheses: the
/// adaptation grid's names hold commas (`eemu-adapt(lr=0.0002,steps=1)`).
fn parse_names(text: &str) -> Result<Names, String> {
    let (mut names, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Err(format!("unbalanced ')' at character {}", i + 1)),
            ')' => depth -= 1,
            ',' if depth == 0 => {
                names.push(text[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".to_string());
    }
    names.push(text[start..].to_string());
    Ok(Names(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_lists_split_at_commas_outside_parentheses() {
        let names = |t: &str| parse_names(t).map(|n| n.0);
        assert_eq!(names("retrain,mean").unwrap(), ["retrain", "mean"]);
        assert_eq!(
            names("a:eemu-adapt(lr=0.0002,steps=1,T=1)+b:eemu-adapt(lr=0.0002,steps=1,T=1),mean").unwrap(),
            ["a:eemu-adapt(lr=0.0002,steps=1,T=1)+b:eemu-adapt(lr=0.0002,steps=1,T=1)", "mean"]
        );
        assert_eq!(names("mean,").unwrap(), ["mean", ""], "an empty name is left for compare to refuse");
        assert!(names("eemu-adapt(lr=1").unwrap_err().contains("unbalanced '('"));
        assert!(names("mean)").unwrap_err().contains("unbalanced ')' at character 5"));
    }
}
