//! Checkpoints of `eemu evaluate --checkpoint-dir DIR`. After every evaluation each method's
//! training state goes to `DIR/<method>.safetensors`, written atomically, so a run that is
//! stopped or killed goes on from its last evaluation, and a finished run can be extended to
//! more epochs. On the CPU a resumed run gives the numbers of an uninterrupted one: every
//! epoch's random stream is keyed by (seed, shard, epoch) alone, and the file holds the rest of
//! the state (every shard's weights, Adam moments and step count; the epoch chosen on
//! validation so far with its weights and ranks; the validation curve).
//!
//! On the CPU the identity includes the CPU's model and widest vector extension: even under the
//! kernel caps two kinds of CPU train other bytes, so a run is not resumed on another kind. A
//! checkpoint written before the CPU was recorded is resumed with a warning.
//!
//! The per-user adaptation grid of the chosen `eemu` models is kept beside them, in
//! `DIR/eemu-adapt.json` (see [`AdaptCache`]), and that of the `mean` models (`mean-adapt`) in
//! `DIR/mean-adapt.json`: a resumed run whose chosen epoch did not move reads each setting's ranks
//! back instead of adapting every user again.
//!
//! The eemu build is not part of a checkpoint's identity: after a change to the training code,
//! start over with another folder.
//!
//! A checkpoint holds models trained on the data. It is not part of the store, and `eemu
//! forget` does not know it: delete the folder after a deletion.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::{AdaptRanks, AdaptSetting, BestEpoch, EvalOptions, Targets};
use crate::config::{AdaptConfig, AdaptScope, Algorithm};
use crate::store::Prepared;
use crate::train::Adam;

const FORMAT: u32 = 1;
/// Format of `eemu-adapt.json`, apart from the checkpoints' so that either can change alone.
const ADAPT_FORMAT: u32 = 1;
const META: &str = "meta";

/// Everything a checkpoint's state depends on besides the epoch count: resuming needs each
/// field equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub method: String,
    pub algorithm: Algorithm,
    pub shards: usize,
    /// SHA-256 of the whole resolved config.
    pub config_hash: String,
    /// SHA-256 of the settings training depends on (`Config::training_identity`: seed, [shards],
    /// [model], [train]). A checkpoint goes on under a config that differs only elsewhere: [adapt],
    /// [cluster] and [infer] act after training. None in checkpoints written before it existed,
    /// which need the whole config equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_hash: Option<String>,
    /// SHA-256 over every shard's lineage hash (the training rows) and the evaluation targets.
    pub data_hash: String,
    pub eval_every: usize,
    pub device: String,
    /// The CPU kernel caps (`engine::cpu_kernels`); None on CUDA.
    pub cpu_kernels: Option<String>,
    /// The CPU's name, family, model and widest vector extension (`engine::cpu_model`; without the
    /// family and model in checkpoints of eemu before 2026-12-06); None on CUDA, and in
    /// checkpoints written before it was recorded.
    #[serde(default)]
    pub cpu: Option<String>,
}

impl Identity {
    pub fn new(p: &Prepared, t: &Targets, method: &str, algorithm: Algorithm, shards: usize, o: &EvalOptions) -> Self {
        let mut h = Sha256::new();
        h.update(b"eemu-evaluation-data-v1");
        h.update(p.id.as_bytes());
        for l in &p.lineages {
            h.update(l.lineage.as_bytes());
        }
        for k in 0..t.users.len() {
            h.update(t.users[k].to_le_bytes());
            h.update(t.valid[k].map_or(u32::MAX, |v| v).to_le_bytes());
            h.update(t.test[k].to_le_bytes());
        }
        Identity {
            method: method.to_string(),
            algorithm,
            shards,
            config_hash: p.config.hash(),
            training_hash: Some(p.config.training_hash()),
            data_hash: crate::config::hex(&h.finalize()),
            eval_every: o.eval_every,
            device: format!("{:?}", o.device),
            cpu_kernels: (o.device == Device::Cpu).then(crate::engine::cpu_kernels),
            cpu: if o.device == Device::Cpu { crate::engine::cpu_model() } else { None },
        }
    }
}

/// The JSON part of a checkpoint. Floats that reach the results are stored as bits, so they
/// come back exactly.
#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    identity: Identity,
    epoch: usize,
    /// (epoch, validation HR@10 as `f64::to_bits`).
    curve: Vec<(usize, u64)>,
    train_seconds: f64,
    best_epoch: usize,
    best_validation_ranks: Vec<usize>,
    best_test_ranks: Vec<usize>,
    adam_steps: Vec<i32>,
}

/// A method's training state after `epoch` epochs.
pub struct Saved {
    pub epoch: usize,
    pub curve: Vec<(usize, f64)>,
    pub train_seconds: f64,
    pub best: BestEpoch,
    /// Every shard's weights and Adam.
    pub shards: Vec<(Tensor, Adam)>,
}

/// `DIR/<method>.safetensors`.
pub fn path(dir: &Path, method: &str) -> PathBuf {
    dir.join(format!("{method}.safetensors"))
}

/// Writes the state atomically (the previous checkpoint stays whole until the new one is).
pub fn write(
    path: &Path,
    id: &Identity,
    epoch: usize,
    curve: &[(usize, f64)],
    train_seconds: f64,
    best: &BestEpoch,
    shards: &[(&Tensor, &Adam)],
) -> Result<()> {
    let meta = Meta {
        format: FORMAT,
        identity: id.clone(),
        epoch,
        curve: curve.iter().map(|&(e, v)| (e, v.to_bits())).collect(),
        train_seconds,
        best_epoch: best.epoch,
        best_validation_ranks: best.validation_ranks.clone(),
        best_test_ranks: best.test_ranks.clone(),
        adam_steps: shards.iter().map(|(_, a)| a.step_count()).collect(),
    };
    let cpu = |t: &Tensor| t.detach().to_device(Device::Cpu).contiguous();
    let mut named = vec![(META.to_string(), Tensor::from_slice(&serde_json::to_vec(&meta)?))];
    for (i, (weights, adam)) in shards.iter().enumerate() {
        let (m, v) = adam.moments();
        named.push((format!("shard.{i}.weights"), cpu(weights)));
        named.push((format!("shard.{i}.adam_m"), cpu(m)));
        named.push((format!("shard.{i}.adam_v"), cpu(v)));
    }
    for (i, w) in best.snapshot.iter().enumerate() {
        named.push((format!("best.{i}.weights"), cpu(w)));
    }
    crate::engine::write_safetensors_atomic(&named, path)
}

/// The header and tensors of the checkpoint at `path`; `Ok(None)` when there is none.
fn load(path: &Path) -> Result<Option<(Meta, BTreeMap<String, Tensor>)>> {
    if !path.exists() {
        return Ok(None);
    }
    let named = Tensor::read_safetensors(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let mut by_name: BTreeMap<String, Tensor> = named.into_iter().collect();
    let meta = by_name
        .remove(META)
        .with_context(|| format!("{} is not an eemu evaluation checkpoint (no {META:?} entry)", path.display()))?;
    let meta: Meta = serde_json::from_slice(&Vec::<u8>::try_from(meta.to_kind(Kind::Uint8))?)
        .with_context(|| format!("{}: unreadable checkpoint header", path.display()))?;
    if meta.format != FORMAT {
        bail!("{}: checkpoint format {}, this eemu reads format {FORMAT}", path.display(), meta.format);
    }
    Ok(Some((meta, by_name)))
}

/// Whether a run of identity `id` up to `epochs` epochs can go on from `meta`.
fn check_meta(path: &Path, meta: &Meta, id: &Identity, epochs: usize) -> Result<()> {
    let mut there = meta.identity.clone();
    match &there.training_hash {
        // Same training settings: the rest of the config may differ.
        Some(hash) if Some(hash) == id.training_hash.as_ref() => there.config_hash = id.config_hash.clone(),
        Some(_) => {}
        // Written before the training settings were hashed apart: the whole config must match.
        None => there.training_hash = id.training_hash.clone(),
    }
    if let Some(cpu) = unrecorded_cpu(&meta.identity, id) {
        // Written before the CPU, or its family and model, was recorded: `read` warns.
        there.cpu = Some(cpu.to_string());
    }
    let differences = differing_fields(&there, id)?;
    if !differences.is_empty() {
        bail!(
            "{} was written by another evaluation ({}); use another --checkpoint-dir, or remove the file to \
             start this method over",
            path.display(),
            differences.join("; ")
        );
    }
    if meta.epoch > epochs {
        bail!(
            "{} holds {} epochs, more than the {epochs} asked for: ask for at least {} epochs, or remove the \
             file to start this method over",
            path.display(),
            meta.epoch,
            meta.epoch
        );
    }
    Ok(())
}

/// Fails when the checkpoint at `path` exists and a run of identity `id` up to `epochs` epochs
/// cannot go on from it (checked for every method before any trains).
pub fn check(path: &Path, id: &Identity, epochs: usize) -> Result<()> {
    match load(path)? {
        Some((meta, _)) => check_meta(path, &meta, id, epochs),
        None => Ok(()),
    }
}

/// Reads the checkpoint at `path` for a run of identity `id` up to `epochs` epochs, with
/// `parameters[i]` weights in shard i (shards differ: each embeds its own users) and Adam step
/// size `learning_rate_at(epoch)` at the saved epoch, onto `device`; `Ok(None)` when there is none.
pub fn read(
    path: &Path,
    id: &Identity,
    epochs: usize,
    parameters: &[i64],
    learning_rate_at: &dyn Fn(usize) -> f64,
    device: Device,
) -> Result<Option<Saved>> {
    let Some((meta, mut by_name)) = load(path)? else {
        return Ok(None);
    };
    check_meta(path, &meta, id, epochs)?;
    if let Some(cpu) = unrecorded_cpu(&meta.identity, id) {
        tracing::warn!(
            "{} does not record the generation of CPU it was trained on ({}); resuming it on this one ({cpu}) \
             gives the numbers of an uninterrupted run only if it is the same kind",
            path.display(),
            meta.identity.cpu.as_deref().unwrap_or("no CPU recorded")
        );
    }
    if parameters.len() != id.shards {
        bail!("{}: {} shards to read, {} parameter counts given", path.display(), id.shards, parameters.len());
    }
    let mut take = |name: String, shard: usize| -> Result<Tensor> {
        let t = by_name.remove(&name).with_context(|| format!("{}: checkpoint lacks {name}", path.display()))?;
        let expected = parameters[shard];
        if t.kind() != Kind::Float || t.numel() as i64 != expected {
            bail!("{}: {name} holds {} values, the model of shard {shard} has {expected}", path.display(), t.numel());
        }
        Ok(t.to_device(device))
    };
    let mut shards = Vec::with_capacity(id.shards);
    for i in 0..id.shards {
        let step =
            *meta.adam_steps.get(i).with_context(|| format!("{}: no Adam step count of shard {i}", path.display()))?;
        let weights = take(format!("shard.{i}.weights"), i)?;
        let adam = Adam::from_state(
            learning_rate_at(meta.epoch),
            step,
            take(format!("shard.{i}.adam_m"), i)?,
            take(format!("shard.{i}.adam_v"), i)?,
        );
        shards.push((weights, adam));
    }
    let snapshot = (0..id.shards).map(|i| take(format!("best.{i}.weights"), i)).collect::<Result<Vec<_>>>()?;
    let best = BestEpoch::new(meta.best_epoch, meta.best_validation_ranks, meta.best_test_ranks, snapshot);
    let curve = meta.curve.iter().map(|&(e, bits)| (e, f64::from_bits(bits))).collect();
    Ok(Some(Saved { epoch: meta.epoch, curve, train_seconds: meta.train_seconds, best, shards }))
}

/// The ranks of the per-user adaptation grid of one set of chosen `eemu` models, kept in
/// `DIR/eemu-adapt.json` and written atomically after each learning rate's pass. The key is a
/// SHA-256 over the `eemu` identity (data, targets, config with its `[adapt]` section and seed,
/// device, CPU) and the chosen models' weights, so entries are read back only for the very models
/// and adaptation sets that produced them; a file with another key is replaced. A file keyed
/// with this CPU as eemu recorded it before it noted the family and model is read too.
pub struct AdaptCache {
    path: PathBuf,
    key: String,
    entries: Vec<AdaptEntry>,
}

/// One setting's ranks in an [`AdaptCache`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AdaptEntry {
    /// For reading; `learning_rate_bits` is what is matched.
    learning_rate: f64,
    learning_rate_bits: u64,
    steps: usize,
    /// The adaptation set's sampling temperature and size; absent in files written before the
    /// grid could vary them, whose entries used the config's (part of the key).
    #[serde(default)]
    temperature_bits: Option<u64>,
    #[serde(default)]
    set_size: Option<usize>,
    /// Negatives drawn per set; absent in files written before they could vary, whose entries
    /// drew one per item.
    #[serde(default)]
    negatives: Option<usize>,
    /// The parameters adapted; absent for `all`, which is what files written before the scope
    /// existed used.
    #[serde(default, skip_serializing_if = "AdaptScope::is_all")]
    scope: AdaptScope,
    /// Whether the validation item could be drawn as a negative; absent for false, which is what
    /// files written before the option existed used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    validation_as_negative: bool,
    valid: Vec<usize>,
    test: Vec<usize>,
    /// Seconds of the pass that produced the entry, up to this step count.
    seconds: f64,
}

impl AdaptEntry {
    /// Whether this entry holds the ranks of `s` (entries of old files are completed on reading).
    fn is(&self, s: &AdaptSetting) -> bool {
        self.learning_rate_bits == s.learning_rate.to_bits()
            && self.steps == s.steps
            && self.temperature_bits == Some(s.temperature.to_bits())
            && self.set_size == Some(s.set_size)
            && self.negatives == Some(s.negatives)
            && self.scope == s.scope
            && self.validation_as_negative == s.validation_as_negative
    }
}

#[derive(Serialize, Deserialize)]
struct AdaptFile {
    format: u32,
    key: String,
    entries: Vec<AdaptEntry>,
}

impl AdaptCache {
    /// The file in `dir` that holds the cache of the models of `id.method`: `eemu-adapt.json` for
    /// `eemu`, `mean-adapt.json` for `mean`.
    fn file(dir: &Path, id: &Identity) -> PathBuf {
        dir.join(format!("{}-adapt.json", id.method))
    }

    /// The cache in `dir` for the models of identity `id` (`eemu`, or `mean` for `mean-adapt`)
    /// with chosen weights `models` (one flat vector per shard), under the config's adaptation
    /// settings `c`. Empty when there is no file or it belongs to other models; a file that
    /// cannot be read is reported and replaced (it only saves time).
    pub fn open(dir: &Path, id: &Identity, models: &[&Tensor], c: &AdaptConfig) -> Result<AdaptCache> {
        // Each shard's length and little-endian values, hashed after the identity.
        let mut weights = Vec::new();
        for w in models {
            let w = w.detach().to_device(Device::Cpu).contiguous();
            let values = Vec::<f32>::try_from(&w).context("model weights are not f32")?;
            weights.extend((values.len() as u64).to_le_bytes());
            weights.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        }
        let key_for = |cpu: Option<String>| -> Result<String> {
            let mut h = Sha256::new();
            h.update(b"eemu-adaptation-cache-v1");
            // The whole config's hash covers the training settings: the key leaves the training
            // hash out, as it was before that existed, so earlier files stay readable.
            h.update(serde_json::to_vec(&Identity { training_hash: None, cpu, ..id.clone() })?);
            h.update(&weights);
            Ok(crate::config::hex(&h.finalize()))
        };
        let key = key_for(id.cpu.clone())?;
        // Also a file written on this CPU before its family and model were recorded; that key is
        // computed only for a file whose key is not this one.
        let ours = |f: &AdaptFile| -> Result<bool> {
            if f.format != ADAPT_FORMAT {
                return Ok(false);
            }
            Ok(f.key == key
                || match id.cpu.as_deref().and_then(crate::engine::cpu_model_without_generation) {
                    Some(earlier) => f.key == key_for(Some(earlier))?,
                    None => false,
                })
        };
        let path = Self::file(dir, id);
        let mut entries = Vec::new();
        if path.exists() {
            let read = std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| serde_json::from_slice::<AdaptFile>(&b).map_err(anyhow::Error::from));
            match read {
                Ok(f) if ours(&f)? => {
                    entries = f.entries;
                    for e in &mut entries {
                        e.temperature_bits.get_or_insert(c.temperature.to_bits());
                        let set_size = *e.set_size.get_or_insert(c.set_size);
                        e.negatives.get_or_insert(set_size);
                    }
                }
                Ok(_) => tracing::info!(
                    "{} holds the adaptation of other models; adapting again and replacing it",
                    path.display()
                ),
                Err(e) => tracing::warn!("{}: unreadable ({e:#}); adapting again and replacing it", path.display()),
            }
        }
        Ok(AdaptCache { path, key, entries })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ranks of `setting`, if cached.
    pub fn get(&self, setting: AdaptSetting) -> Option<AdaptRanks> {
        self.entries.iter().find(|e| e.is(&setting)).map(|e| AdaptRanks {
            setting,
            valid: e.valid.clone(),
            test: e.test.clone(),
            seconds: e.seconds,
        })
    }

    /// Adds (or replaces) the entries of `ranks` and writes the file atomically.
    pub fn put(&mut self, ranks: &[AdaptRanks]) -> Result<()> {
        for r in ranks {
            self.entries.retain(|x| !x.is(&r.setting));
            self.entries.push(AdaptEntry {
                learning_rate: r.setting.learning_rate,
                learning_rate_bits: r.setting.learning_rate.to_bits(),
                steps: r.setting.steps,
                temperature_bits: Some(r.setting.temperature.to_bits()),
                set_size: Some(r.setting.set_size),
                negatives: Some(r.setting.negatives),
                scope: r.setting.scope,
                validation_as_negative: r.setting.validation_as_negative,
                valid: r.valid.clone(),
                test: r.test.clone(),
                seconds: r.seconds,
            });
        }
        let file = AdaptFile { format: ADAPT_FORMAT, key: self.key.clone(), entries: self.entries.clone() };
        crate::store::files::write_atomic(&self.path, &serde_json::to_vec(&file)?)
    }
}

/// This CPU, when the checkpoint (`there`) was trained on a CPU without recording which, or
/// recorded it as eemu did before it noted the family and model, with the same name and widest
/// extension as this one.
fn unrecorded_cpu<'a>(there: &Identity, here: &'a Identity) -> Option<&'a str> {
    let here_cpu = here.cpu.as_deref()?;
    match (&there.cpu, &there.cpu_kernels) {
        (None, Some(_)) => Some(here_cpu),
        (Some(cpu), _) if crate::engine::cpu_model_without_generation(here_cpu).as_ref() == Some(cpu) => Some(here_cpu),
        _ => None,
    }
}

/// "field: A there, B here" for every field of the identities that differs.
fn differing_fields(there: &Identity, here: &Identity) -> Result<Vec<String>> {
    let (a, b) = (serde_json::to_value(there)?, serde_json::to_value(here)?);
    let (a, b) = (a.as_object().expect("a struct"), b.as_object().expect("a struct"));
    Ok(b.iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {} there, {v} here", a.get(k).unwrap_or(&serde_json::Value::Null)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(cpu: Option<&str>) -> Identity {
        Identity {
            method: "eemu".to_string(),
            algorithm: Algorithm::Fomaml,
            shards: 2,
            config_hash: "c".to_string(),
            training_hash: Some("t".to_string()),
            data_hash: "d".to_string(),
            eval_every: 1,
            device: "Cpu".to_string(),
            cpu_kernels: Some("MKL_CBWR=AVX2".to_string()),
            cpu: cpu.map(str::to_string),
        }
    }

    fn meta(identity: Identity) -> Meta {
        Meta {
            format: FORMAT,
            identity,
            epoch: 2,
            curve: vec![],
            train_seconds: 0.0,
            best_epoch: 1,
            best_validation_ranks: vec![],
            best_test_ranks: vec![],
            adam_steps: vec![0, 0],
        }
    }

    #[test]
    fn a_checkpoint_of_another_kind_of_cpu_is_refused_naming_both() {
        let path = Path::new("ck/eemu.safetensors");
        let here = identity(Some("Intel(R) Xeon(R) Processor (avx512f)"));
        let err = check_meta(path, &meta(identity(Some("AMD EPYC 9654 (avx512f)"))), &here, 4).unwrap_err().to_string();
        assert!(err.contains("cpu:"), "{err}");
        assert!(
            err.contains("AMD EPYC 9654 (avx512f)") && err.contains("Intel(R) Xeon(R) Processor (avx512f)"),
            "{err}"
        );
        assert!(!err.contains("cpu_kernels"), "only the CPU differs: {err}");
        check_meta(path, &meta(here.clone()), &here, 4).unwrap();
    }

    #[test]
    fn a_checkpoint_without_a_recorded_cpu_is_resumed_but_other_differences_still_count() {
        let path = Path::new("ck/eemu.safetensors");
        // A header written before the field existed has no "cpu" key at all.
        let mut old = serde_json::to_value(identity(None)).unwrap();
        old.as_object_mut().unwrap().remove("cpu");
        let old: Identity = serde_json::from_value(old).unwrap();
        assert_eq!(old.cpu, None);
        let here = identity(Some("Intel(R) Xeon(R) Processor (avx512f)"));
        check_meta(path, &meta(old.clone()), &here, 4).unwrap();
        let other = Identity { eval_every: 10, ..old };
        let err = check_meta(path, &meta(other), &here, 4).unwrap_err().to_string();
        assert!(err.contains("eval_every: 10 there, 1 here"), "{err}");
        assert!(!err.contains("cpu"), "{err}");
    }

    #[test]
    fn a_checkpoint_recording_the_cpu_without_its_generation_is_resumed_on_the_same_name_only() {
        let path = Path::new("ck/eemu.safetensors");
        let here = identity(Some("Intel(R) Xeon(R) Processor (family 6, model 167, avx512f)"));
        let earlier = identity(Some("Intel(R) Xeon(R) Processor (avx512f)"));
        assert_eq!(unrecorded_cpu(&earlier, &here), here.cpu.as_deref());
        check_meta(path, &meta(earlier), &here, 4).unwrap();
        // Another name or another widest extension in the earlier form is another CPU.
        for other in ["AMD EPYC 9654 (avx512f)", "Intel(R) Xeon(R) Processor (avx2)"] {
            let err = check_meta(path, &meta(identity(Some(other))), &here, 4).unwrap_err().to_string();
            assert!(err.contains("cpu:") && err.contains(other), "{err}");
        }
        // Both records of the present form must match in full: another model is refused.
        let other_model = identity(Some("Intel(R) Xeon(R) Processor (family 6, model 143, avx512f)"));
        assert_eq!(unrecorded_cpu(&other_model, &here), None);
        let err = check_meta(path, &meta(other_model), &here, 4).unwrap_err().to_string();
        assert!(err.contains("model 143") && err.contains("model 167"), "{err}");
    }

    #[test]
    fn adaptation_ranks_cached_under_the_earlier_cpu_record_are_read_back_on_that_cpu_only() {
        let dir = tempfile::tempdir().unwrap();
        let c = AdaptConfig::default();
        let setting = AdaptSetting::of_config(&c);
        let weights = Tensor::from_slice(&[0.5f32, -1.0, 2.0]);
        let ranks = AdaptRanks { setting, valid: vec![3, 1], test: vec![0, 7], seconds: 1.0 };
        let earlier = identity(Some("Intel(R) Xeon(R) Processor (avx512f)"));
        AdaptCache::open(dir.path(), &earlier, &[&weights], &c).unwrap().put(&[ranks]).unwrap();

        let here = identity(Some("Intel(R) Xeon(R) Processor (family 6, model 167, avx512f)"));
        let back = AdaptCache::open(dir.path(), &here, &[&weights], &c).unwrap().get(setting).expect("read back");
        assert_eq!((back.valid, back.test), (vec![3, 1], vec![0, 7]));
        for other in ["Intel(R) Xeon(R) Processor (avx2)", "AMD EPYC (family 25, model 17, avx512f)"] {
            let elsewhere = identity(Some(other));
            assert!(
                AdaptCache::open(dir.path(), &elsewhere, &[&weights], &c).unwrap().get(setting).is_none(),
                "{other}"
            );
        }
        // Other weights on the same CPU are other models.
        let trained_otherwise = Tensor::from_slice(&[0.5f32, -1.0, 2.5]);
        assert!(AdaptCache::open(dir.path(), &here, &[&trained_otherwise], &c).unwrap().get(setting).is_none());
    }

    #[test]
    fn adaptation_entries_are_told_apart_by_their_negatives() {
        let dir = tempfile::tempdir().unwrap();
        let c = AdaptConfig { set_size: 21, ..AdaptConfig::default() };
        let weights = Tensor::from_slice(&[0.5f32, -1.0, 2.0]);
        let here = identity(Some("Intel(R) Xeon(R) Processor (family 6, model 167, avx512f)"));
        let full = AdaptSetting::of_config(&c);
        assert_eq!(full.negatives, 21);
        let few = AdaptSetting { negatives: 3, ..full };
        let unshielded = AdaptSetting { validation_as_negative: true, ..full };
        let ranks = |setting, r| AdaptRanks { setting, valid: vec![r], test: vec![r], seconds: 1.0 };
        let mut cache = AdaptCache::open(dir.path(), &here, &[&weights], &c).unwrap();
        cache.put(&[ranks(full, 1), ranks(few, 2), ranks(unshielded, 3)]).unwrap();
        let cache = AdaptCache::open(dir.path(), &here, &[&weights], &c).unwrap();
        for (setting, r) in [(full, 1), (few, 2), (unshielded, 3)] {
            assert_eq!(cache.get(setting).expect("cached").valid, vec![r], "{setting:?}");
        }
        assert!(cache.get(AdaptSetting { negatives: 4, ..full }).is_none());
        // A file written before negatives could vary: its entries drew one per item.
        let path = cache.path().to_path_buf();
        let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let entries = file["entries"].as_array_mut().unwrap();
        entries.retain(|e| e["negatives"] == 21 && e.get("validation_as_negative").is_none());
        assert_eq!(entries.len(), 1);
        entries[0].as_object_mut().unwrap().remove("negatives");
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let cache = AdaptCache::open(dir.path(), &here, &[&weights], &c).unwrap();
        assert_eq!(cache.get(full).expect("read as one per item").valid, vec![1]);
        assert!(cache.get(few).is_none() && cache.get(unshielded).is_none());
    }

    #[test]
    fn a_checkpoint_goes_on_under_a_config_that_differs_only_after_training() {
        let path = Path::new("ck/eemu.safetensors");
        let here = identity(Some("AMD EPYC (avx512f)"));
        // Another [adapt] section: another config hash, the same training hash.
        let there = Identity { config_hash: "c-with-other-adapt".to_string(), ..here.clone() };
        check_meta(path, &meta(there.clone()), &here, 4).unwrap();
        // Another [train] section: refused, naming both hashes.
        let trained_otherwise = Identity { training_hash: Some("t2".to_string()), ..there };
        let err = check_meta(path, &meta(trained_otherwise), &here, 4).unwrap_err().to_string();
        assert!(err.contains("training_hash: \"t2\" there, \"t\" here"), "{err}");
        assert!(err.contains("config_hash"), "{err}");
        // Written before the training hash existed: the whole config must match.
        let mut old = serde_json::to_value(&here).unwrap();
        old.as_object_mut().unwrap().remove("training_hash");
        let old: Identity = serde_json::from_value(old).unwrap();
        assert_eq!(old.training_hash, None);
        check_meta(path, &meta(old.clone()), &here, 4).unwrap();
        let old_other = Identity { config_hash: "c-with-other-adapt".to_string(), ..old };
        let err = check_meta(path, &meta(old_other), &here, 4).unwrap_err().to_string();
        assert!(err.contains("config_hash: \"c-with-other-adapt\" there, \"c\" here"), "{err}");
        assert!(!err.contains("training_hash"), "{err}");
    }
}
