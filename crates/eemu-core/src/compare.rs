//! Paired comparison of methods from the rank files of `eemu evaluate --ranks-out`.
//!
//! Two methods evaluated on the same split rank the same users' test items, so the question "is
//! A better than B by 10%?" is asked of paired data. Per pair of methods this gives HR@K and
//! NDCG@K, the relative difference A / B - 1 with a percentile bootstrap interval (users drawn
//! with replacement, seeded), and McNemar's exact test on the users that only one of the two hits.
//! On MovieLens 100K (943 users) one unpaired standard error of HR@10 is about as large as a 10%
//! margin; pairing removes the part of the noise the two methods share.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::table::Table;

/// The test ranks of one method: original user id -> 0-based rank.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRanks {
    /// `method`, or `label:method` when several files are compared.
    pub name: String,
    /// Where the rows came from, for messages.
    pub file: PathBuf,
    pub ranks: BTreeMap<String, u64>,
}

/// Reads a rank file (Parquet or CSV with columns method, user_id, rank); each method's names
/// get `label:` in front when a label is given. A (method, user) pair listed twice is an error.
pub fn read_ranks(path: &Path, label: Option<&str>) -> Result<Vec<MethodRanks>> {
    let table = Table::read(path, &["method", "user_id", "rank"], b',')?;
    let methods = table.labels("method")?;
    let users = table.labels("user_id")?;
    let ranks = table.i64s("rank")?;
    let mut out: Vec<MethodRanks> = Vec::new();
    for row in 0..table.rows() {
        let rank = u64::try_from(ranks[row]).map_err(|_| table.error(row, "rank", "expected a rank >= 0"))?;
        if methods[row].is_empty() {
            return Err(table.error(row, "method", "empty method name"));
        }
        let name = match label {
            Some(l) => format!("{l}:{}", methods[row]),
            None => methods[row].clone(),
        };
        let i = match out.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                out.push(MethodRanks { name, file: path.to_path_buf(), ranks: BTreeMap::new() });
                out.len() - 1
            }
        };
        if out[i].ranks.insert(users[row].clone(), rank).is_some() {
            return Err(table.error(
                row,
                "user_id",
                format!("user {} is listed twice for method {}", users[row], methods[row]),
            ));
        }
    }
    if out.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(out)
}

/// Reads every `FILE` or `LABEL=FILE`. With more than one file each method is named
/// `LABEL:method`, where LABEL defaults to the file name without its extension.
pub fn read_all(specs: &[String]) -> Result<Vec<MethodRanks>> {
    let mut all: Vec<MethodRanks> = Vec::new();
    for spec in specs {
        let (label, path) = match spec.split_once('=') {
            Some((l, p)) if !l.is_empty() && !l.contains('/') => (Some(l.to_string()), PathBuf::from(p)),
            _ => (None, PathBuf::from(spec)),
        };
        let label = match label {
            Some(l) => Some(l),
            None if specs.len() > 1 => {
                Some(path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| spec.clone()))
            }
            None => None,
        };
        for m in read_ranks(&path, label.as_deref())? {
            if let Some(other) = all.iter().find(|o| o.name == m.name) {
                bail!(
                    "method {} comes from both {} and {}; give the files labels (LABEL=FILE)",
                    m.name,
                    other.file.display(),
                    m.file.display()
                );
            }
            all.push(m);
        }
    }
    Ok(all)
}

/// Finds a method by its full name, or by the part after `label:` when that is unique.
pub fn find<'a>(all: &'a [MethodRanks], name: &str) -> Result<&'a MethodRanks> {
    if let Some(m) = all.iter().find(|m| m.name == name) {
        return Ok(m);
    }
    let suffix = format!(":{name}");
    let matches: Vec<&MethodRanks> = all.iter().filter(|m| m.name.ends_with(&suffix)).collect();
    match matches.as_slice() {
        [m] => Ok(m),
        [] => bail!("no method {name}; the rank files hold: {}", names(all)),
        _ => bail!(
            "method {name} is ambiguous: {}; name one in full",
            matches.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn names(all: &[MethodRanks]) -> String {
    all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// How the intervals are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Cut-off K of HR@K and NDCG@K.
    pub k: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the resampling (same seed, same intervals).
    pub seed: u64,
    /// Pooled runs are matched by position, the i-th run of the method with the i-th of the
    /// baseline (e.g. both trained at the same seed, which also fixes the shard assignment): each
    /// resample then draws one set of positions for both sides instead of one per side. Where
    /// both sides pool more than one run they must pool as many; a side of one run is drawn as
    /// itself either way.
    pub paired_runs: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { k: 10, resamples: 10_000, seed: 0, paired_runs: false }
    }
}

/// Coverage of the reported intervals.
pub const LEVEL: f64 = 0.95;

/// One metric of a pair: both values, the relative difference and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paired {
    pub method: f64,
    pub baseline: f64,
    /// method / baseline - 1 (None when the baseline is 0).
    pub relative: Option<f64>,
    /// Percentile bootstrap interval of `relative` (None when the baseline is 0).
    pub interval: Option<(f64, f64)>,
}

/// A method against a baseline, paired over the users both ranked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub method: String,
    pub baseline: String,
    pub users: usize,
    /// Runs pooled on each side (one unless several runs were named as `A+B`).
    pub method_runs: usize,
    pub baseline_runs: usize,
    /// Whether each resample drew the two sides' runs at the same positions
    /// ([`Settings::paired_runs`] with more than one run on each side).
    pub runs_drawn_in_pairs: bool,
    pub k: usize,
    pub hr: Paired,
    pub ndcg: Paired,
    /// Users whose test item only the method ranks in the top K (with several runs: users whose
    /// mean hit over the runs is higher for the method).
    pub hits_only_method: usize,
    /// Users whose test item only the baseline ranks in the top K (likewise).
    pub hits_only_baseline: usize,
    /// McNemar's exact two-sided p-value (binomial test on the users only one of the two hits); with
    /// several runs on a side, a paired sign-flip test of the per-user mean hits, which is the same
    /// test on 0/1 hits.
    pub mcnemar_p: f64,
}

/// Compares `method` with `baseline`. Both must rank the same users (the same split).
pub fn compare(method: &MethodRanks, baseline: &MethodRanks, s: &Settings) -> Result<Comparison> {
    compare_runs(&[method], &[baseline], s)
}

/// Compares runs of a method with runs of a baseline (each side one run or several, e.g. the same
/// method trained at several seeds), paired over the users; every run must rank the same users.
/// Each user's HR and NDCG gain on a side is the mean over that side's runs. Each bootstrap
/// resample first draws each side's runs with replacement (where it has more than one, so the
/// seed spread widens the interval; with [`Settings::paired_runs`] the same positions on both
/// sides) and then the users. With one run per side this is the plain
/// paired comparison: the same draws, and `hits_only_*` and McNemar's test on the users one of the
/// two hits. With several runs `hits_only_*` count the users whose mean hit is higher on one side,
/// and the p-value is a paired sign-flip test of the mean hit, which on 0/1 hits is McNemar's.
pub fn compare_runs(method: &[&MethodRanks], baseline: &[&MethodRanks], s: &Settings) -> Result<Comparison> {
    if s.k == 0 || s.resamples == 0 {
        bail!("K and the number of resamples must be at least 1");
    }
    let (Some(first), false) = (method.first(), baseline.is_empty()) else {
        bail!("a comparison needs at least one run of the method and one of the baseline");
    };
    for other in method[1..].iter().chain(baseline) {
        same_users(first, other)?;
    }
    let in_pairs = s.paired_runs && method.len() > 1 && baseline.len() > 1;
    if in_pairs && method.len() != baseline.len() {
        bail!(
            "--paired-runs matches the i-th run of each side, but {} pools {} runs and {} pools {}",
            pool_name(method),
            method.len(),
            pool_name(baseline),
            baseline.len()
        );
    }
    let gain = |r: u64| ndcg_gain(r, s.k);
    let hit = |g: f64| if g > 0.0 { 1.0 } else { 0.0 };
    // Per run, users in id order (the BTreeMap's), so the resampling does not depend on file order.
    let gains = |runs: &[&MethodRanks]| -> Vec<Vec<f64>> {
        runs.iter().map(|m| m.ranks.values().map(|&r| gain(r)).collect()).collect()
    };
    let (ga, gb) = (gains(method), gains(baseline));
    let hits =
        |g: &[Vec<f64>]| -> Vec<Vec<f64>> { g.iter().map(|run| run.iter().map(|&x| hit(x)).collect()).collect() };
    let (ha, hb) = (hits(&ga), hits(&gb));
    let n = first.ranks.len();
    if n == 0 {
        bail!("{} and {} rank no users", pool_name(method), pool_name(baseline));
    }
    let every: Vec<usize> = (0..ha.len().max(hb.len())).collect();
    let over_all = |runs: &[Vec<f64>]| per_user_mean(runs, &every[..runs.len()]).into_owned();
    let (ma, mb) = (over_all(&ha), over_all(&hb));
    let only_a = ma.iter().zip(mb.iter()).filter(|(x, y)| **x > **y).count();
    let only_b = ma.iter().zip(mb.iter()).filter(|(x, y)| **x < **y).count();

    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let (mut hr_rel, mut ndcg_rel) = (Vec::with_capacity(s.resamples), Vec::with_capacity(s.resamples));
    // One run is always drawn as itself, without touching the generator (or allocating), so
    // single-run comparisons keep the plain paired bootstrap's draws.
    let draw_runs = |rng: &mut ChaCha8Rng, k: usize| -> Cow<'static, [usize]> {
        if k == 1 {
            Cow::Borrowed(&[0])
        } else {
            Cow::Owned((0..k).map(|_| rng.gen_range(0..k)).collect())
        }
    };
    for _ in 0..s.resamples {
        let ra = draw_runs(&mut rng, ha.len());
        let rb = if in_pairs { ra.clone() } else { draw_runs(&mut rng, hb.len()) };
        let (ha_r, hb_r, ga_r, gb_r) =
            (per_user_mean(&ha, &ra), per_user_mean(&hb, &rb), per_user_mean(&ga, &ra), per_user_mean(&gb, &rb));
        let (mut sha, mut shb, mut sga, mut sgb) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..n {
            let i = rng.gen_range(0..n);
            sha += ha_r[i];
            shb += hb_r[i];
            sga += ga_r[i];
            sgb += gb_r[i];
        }
        hr_rel.push(ratio(sha, shb));
        ndcg_rel.push(ratio(sga, sgb));
    }
    let paired = |x: &[f64], y: &[f64], rel: &mut Vec<f64>| {
        let (mx, my) = (mean(x), mean(y));
        let relative = (my > 0.0).then(|| mx / my - 1.0);
        Paired { method: mx, baseline: my, relative, interval: relative.map(|_| percentile_interval(rel)) }
    };
    Ok(Comparison {
        method: pool_name(method),
        baseline: pool_name(baseline),
        users: n,
        method_runs: method.len(),
        baseline_runs: baseline.len(),
        runs_drawn_in_pairs: in_pairs,
        k: s.k,
        hr: paired(&ma, &mb, &mut hr_rel),
        ndcg: paired(&over_all(&ga), &over_all(&gb), &mut ndcg_rel),
        hits_only_method: only_a,
        hits_only_baseline: only_b,
        mcnemar_p: if method.len() == 1 && baseline.len() == 1 {
            mcnemar_exact(only_a, only_b)
        } else {
            sign_flip_p(&ma, &mb, s)
        },
    })
}

/// Two-sided p-value of a paired sign-flip (randomization) test of the mean difference of `a`
/// and `b` over users: each of `s.resamples` draws flips the sign of every user's difference with
/// probability 1/2 (seeded by `s.seed`), and p = (1 + draws at least as far from 0 as the observed
/// sum) / (1 + draws). On 0/1 hits this test is McNemar's exact test; on the per-user means of
/// pooled runs it tests the mean, which a sign test on the users does not: one run that hits a few
/// users can have the higher HR while most users' pooled mean is higher for the other side.
fn sign_flip_p(a: &[f64], b: &[f64], s: &Settings) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).filter(|x| *x != 0.0).collect();
    let observed = d.iter().sum::<f64>().abs();
    // Sums of the same values in another order differ in the last bits; this keeps a draw that
    // equals the observed sum from counting as smaller.
    let tolerance = 1e-9 * d.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x7369_676e_2d66_6c69);
    let extreme = (0..s.resamples)
        .filter(|_| {
            let sum: f64 = d.iter().map(|&x| if rng.gen::<bool>() { x } else { -x }).sum();
            sum.abs() >= observed - tolerance
        })
        .count();
    (1 + extreme) as f64 / (1 + s.resamples) as f64
}

/// Each user's mean over the runs `which` (indices into `runs`, repeats allowed); one run is
/// borrowed as it is.
fn per_user_mean<'a>(runs: &'a [Vec<f64>], which: &[usize]) -> Cow<'a, [f64]> {
    if let [only] = which {
        return Cow::Borrowed(&runs[*only]);
    }
    let mut out = vec![0.0; runs[0].len()];
    for &r in which {
        for (o, v) in out.iter_mut().zip(&runs[r]) {
            *o += v;
        }
    }
    let k = which.len() as f64;
    out.iter_mut().for_each(|o| *o /= k);
    Cow::Owned(out)
}

/// The name of a pool of runs: the runs' names joined with `+`.
pub fn pool_name(runs: &[&MethodRanks]) -> String {
    runs.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join("+")
}

/// An error unless `a` and `b` rank the same users (a paired comparison needs the same split).
fn same_users(a: &MethodRanks, b: &MethodRanks) -> Result<()> {
    if a.ranks.len() == b.ranks.len() && a.ranks.keys().eq(b.ranks.keys()) {
        return Ok(());
    }
    let only = |x: &MethodRanks, y: &MethodRanks| x.ranks.keys().filter(|u| !y.ranks.contains_key(*u)).count();
    let example = a
        .ranks
        .keys()
        .find(|u| !b.ranks.contains_key(*u))
        .or_else(|| b.ranks.keys().find(|u| !a.ranks.contains_key(*u)))
        .cloned()
        .unwrap_or_default();
    bail!(
        "{} ({}) and {} ({}) do not rank the same users ({} only in the first, {} only in the second, \
         e.g. user {example}); a paired comparison needs the same split",
        a.name,
        a.file.display(),
        b.name,
        b.file.display(),
        only(a, b),
        only(b, a)
    )
}

/// NDCG@K of one user with one held-out item at 0-based `rank`: 1 / log2(rank + 2) in the top K,
/// else 0 (the ideal DCG is 1).
pub fn ndcg_gain(rank: u64, k: usize) -> f64 {
    if rank < k as u64 {
        1.0 / ((rank + 2) as f64).log2()
    } else {
        0.0
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

/// a / b - 1; a resample in which the baseline scores nothing counts as +infinity (or 0 when
/// neither does), so it lands at the top of the sorted resamples instead of being dropped.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b - 1.0
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// The central `LEVEL` interval of the resampled values (nearest-rank percentiles).
fn percentile_interval(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let at = |q: f64| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    let tail = (1.0 - LEVEL) / 2.0;
    (at(tail), at(1.0 - tail))
}

/// Two-sided exact McNemar p-value: 2 P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), at most 1.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let ln_choose = |n: usize, k: usize| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    let tail: f64 = (0..=b.min(c)).map(|k| (ln_choose(n, k) - n as f64 * std::f64::consts::LN_2).exp()).sum();
    (2.0 * tail).min(1.0)
}

fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// The runs a name stands for: one method (see [`find`]), or several joined with `+`
/// (`s0:mean+s1:mean`, e.g. one method trained at several seeds), pooled by [`compare_runs`].
/// A part `PREFIX*:METHOD` stands for every run of METHOD whose label starts with PREFIX, in the
/// order of the rank files (`f*:eemu-adapt` for `f1:eemu-adapt+f2:eemu-adapt+...`). A method whose
/// full name contains `+` or `*` is still found by that name.
pub fn find_runs<'a>(all: &'a [MethodRanks], spec: &str) -> Result<Vec<&'a MethodRanks>> {
    if all.iter().any(|m| m.name == spec) || (!spec.contains('+') && !spec.contains('*')) {
        return Ok(vec![find(all, spec)?]);
    }
    let mut runs: Vec<&MethodRanks> = Vec::new();
    for part in spec.split('+') {
        if part.is_empty() {
            bail!("{spec}: empty method name in a list of runs joined with +");
        }
        let exact = all.iter().any(|m| m.name == part);
        let found = match if exact { None } else { glob(part)? } {
            Some((prefix, method)) => expand(all, part, prefix, method)?,
            None => vec![find(all, part)?],
        };
        for m in found {
            if runs.iter().any(|r| r.name == m.name) {
                bail!("{spec} names the run {} twice", m.name);
            }
            runs.push(m);
        }
    }
    Ok(runs)
}

/// `PREFIX*:METHOD` as (PREFIX, METHOD); None for a name without `*`.
fn glob(part: &str) -> Result<Option<(&str, &str)>> {
    if !part.contains('*') {
        return Ok(None);
    }
    match part.split_once(':') {
        Some((label, method))
            if label.ends_with('*')
                && label.matches('*').count() == 1
                && !method.is_empty()
                && !method.contains('*') =>
        {
            Ok(Some((&label[..label.len() - 1], method)))
        }
        _ => bail!(
            "{part}: * may only end the label, as in f*:eemu-adapt (the runs of eemu-adapt whose label starts with f)"
        ),
    }
}

/// The label of a run named `LABEL:method`, for that `method`.
fn label_of<'n>(name: &'n str, method: &str) -> Option<&'n str> {
    name.strip_suffix(method)?.strip_suffix(':')
}

/// The runs `PREFIX*:METHOD` stands for, in the order of the rank files; at least one.
fn expand<'a>(all: &'a [MethodRanks], part: &str, prefix: &str, method: &str) -> Result<Vec<&'a MethodRanks>> {
    let found: Vec<&MethodRanks> =
        all.iter().filter(|m| label_of(&m.name, method).is_some_and(|l| l.starts_with(prefix))).collect();
    if found.is_empty() {
        bail!(
            "{part} matches no run (no label starting with {prefix} has a method {method}); the rank files hold: {}",
            names(all)
        );
    }
    Ok(found)
}

/// For a name that is one `PREFIX*:METHOD`, what follows PREFIX in each run's label (the seed in
/// `f1`, `f2`, ...); None for any other name.
fn glob_suffixes(spec: &str, runs: &[&MethodRanks]) -> Option<Vec<String>> {
    let (prefix, method) = glob(spec).ok().flatten()?;
    runs.iter().map(|m| label_of(&m.name, method).map(|l| l[prefix.len()..].to_string())).collect()
}

/// A side of a comparison: one run of a method, or several pooled.
pub type Runs<'a> = Vec<&'a MethodRanks>;

/// Which pairs to compare: every method in `methods` (default: all) against every baseline
/// (default: `retrain` and `mean`, where the files hold them). Each name may pool several runs
/// (`A+B` or `PREFIX*:METHOD`, see [`find_runs`]). With `paired_runs`, two sides named each by
/// one `PREFIX*:METHOD` must end their labels alike, run by run (`f1, f2` with `m1, m2`), since
/// the i-th runs are then drawn together.
pub fn pairs<'a>(
    all: &'a [MethodRanks],
    methods: &[String],
    baselines: &[String],
    paired_runs: bool,
) -> Result<Vec<(Runs<'a>, Runs<'a>)>> {
    let resolve = |specs: &[String]| -> Result<Vec<(Runs<'a>, Option<Vec<String>>)>> {
        specs
            .iter()
            .map(|spec| {
                let runs = find_runs(all, spec)?;
                let suffixes = glob_suffixes(spec, &runs);
                Ok((runs, suffixes))
            })
            .collect()
    };
    let bases = if baselines.is_empty() {
        let found: Vec<_> =
            ["retrain", "mean"].iter().filter_map(|b| find(all, b).ok()).map(|m| (vec![m], None)).collect();
        if found.is_empty() {
            bail!("no retrain or mean among {}; name the baseline with --baseline", names(all));
        }
        found
    } else {
        resolve(baselines)?
    };
    let chosen = if methods.is_empty() { all.iter().map(|m| (vec![m], None)).collect() } else { resolve(methods)? };
    // Each unordered pair once: of two baselines that are both among the methods, the later one
    // is compared against the earlier (mean against retrain, not retrain against mean as well).
    // An earlier baseline named in `methods` is still compared with a later baseline that is not.
    let same = |x: &Runs, y: &Runs| pool_name(x) == pool_name(y);
    let is_chosen = |r: &Runs| chosen.iter().any(|(c, _)| same(c, r));
    let mut out = Vec::new();
    for (i, (b, b_suffixes)) in bases.iter().enumerate() {
        for (m, m_suffixes) in &chosen {
            let reverse_listed = bases[..i].iter().any(|(e, _)| same(e, m)) && is_chosen(b);
            if same(m, b) || reverse_listed {
                continue;
            }
            if let (true, Some(ms), Some(bs)) = (paired_runs && m.len() > 1 && b.len() > 1, m_suffixes, b_suffixes) {
                if ms != bs {
                    bail!(
                        "--paired-runs draws the i-th runs of {} and {} together, but their labels end in {} and {}; \
                         give the runs of one seed the same ending (f1 and m1), or name the runs in order with +",
                        pool_name(m),
                        pool_name(b),
                        ms.join(", "),
                        bs.join(", ")
                    );
                }
            }
            out.push((m.clone(), b.clone()));
        }
    }
    if out.is_empty() {
        bail!("nothing to compare: the rank files hold only {}", names(all));
    }
    Ok(out)
}

/// The comparisons as a table (metrics x 100, relative differences in percent).
pub fn table(rows: &[Comparison], s: &Settings) -> String {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:+.1}%", 100.0 * v));
    let ci =
        |x: Option<(f64, f64)>| x.map_or("-".to_string(), |(lo, hi)| format!("[{}, {}]", pct(Some(lo)), pct(Some(hi))));
    let width = rows.iter().flat_map(|r| [r.method.len(), r.baseline.len()]).max().unwrap_or(6).max(6);
    let k = s.k;
    // Pooled rows carry a sign-flip p-value, not McNemar's: the column is then named "p".
    let pooled = rows.iter().any(|r| r.method_runs > 1 || r.baseline_runs > 1);
    let mut out = format!(
        "{:<width$}  {:<width$}  {:>5}  {:>7}  {:>7}  {:>8}  {:>18}  {:>9}  {:>10}  {:>8}  {:>18}\n",
        "method",
        "vs",
        "users",
        format!("HR@{k}"),
        "base",
        "relative",
        "95% interval",
        "only m/b",
        if pooled { "p" } else { "McNemar p" },
        "NDCG rel",
        "95% interval",
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:<width$}  {:>5}  {:>7.2}  {:>7.2}  {:>8}  {:>18}  {:>9}  {:>10.3}  {:>8}  {:>18}\n",
            r.method,
            r.baseline,
            r.users,
            100.0 * r.hr.method,
            100.0 * r.hr.baseline,
            pct(r.hr.relative),
            ci(r.hr.interval),
            format!("{}/{}", r.hits_only_method, r.hits_only_baseline),
            r.mcnemar_p,
            pct(r.ndcg.relative),
            ci(r.ndcg.interval),
        ));
    }
    out.push_str(&format!(
        "HR@{k} x 100 of the method and the baseline, paired over the users both rank; relative = method / \
         baseline - 1;\n{:.0}% percentile bootstrap intervals over users ({} resamples, seed {}); only m/b = users \
         only the method / only the baseline hits;\n{}: exact two-sided test on those users.\n",
        100.0 * LEVEL,
        s.resamples,
        s.seed,
        if pooled { "p of single runs (McNemar)" } else { "McNemar p" },
    ));
    if pooled {
        out.push_str(
            "A+B: runs pooled (e.g. seeds); each user's hit is the mean over the runs, each resample also draws \
             each side's runs\nwith replacement, only m/b count users whose mean is higher, and p is \
             that of a paired sign-flip test\nof the mean hit over users (on single runs this is McNemar's \
             test).\n",
        );
        if rows.iter().any(|r| r.runs_drawn_in_pairs) {
            out.push_str(
                "--paired-runs: where both sides pool several runs, the i-th run of the method goes with the \
                 i-th of the baseline\n(e.g. the same seed) and each resample draws the same positions on \
                 both sides.\n",
            );
        }
    }
    out
}

/// The JSON report of `eemu compare --out`.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub k: usize,
    pub resamples: usize,
    pub seed: u64,
    pub paired_runs: bool,
    pub level: f64,
    pub files: Vec<String>,
    pub comparisons: &'a [Comparison],
}

/// Files named by the specs, for the report.
pub fn files(all: &[MethodRanks]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in all {
        let f = m.file.display().to_string();
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Runs the whole command: read, compare, render; writes the JSON report when `out` is given.
pub fn run(
    specs: &[String],
    methods: &[String],
    baselines: &[String],
    s: &Settings,
    out: Option<&Path>,
) -> Result<String> {
    let all = read_all(specs)?;
    let rows: Vec<Comparison> = pairs(&all, methods, baselines, s.paired_runs)?
        .iter()
        .map(|(m, b)| compare_runs(m, b, s))
        .collect::<Result<_>>()?;
    let mut text = table(&rows, s);
    if let Some(path) = out {
        let report = Report {
            k: s.k,
            resamples: s.resamples,
            seed: s.seed,
            paired_runs: s.paired_runs,
            level: LEVEL,
            files: files(&all),
            comparisons: &rows,
        };
        let json = serde_json::to_string_pretty(&report)? + "\n";
        crate::store::files::write_atomic(path, json.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        text.push_str(&format!("results written to {}\n", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranks(name: &str, r: &[u64]) -> MethodRanks {
        MethodRanks {
            name: name.into(),
            file: PathBuf::from("x.parquet"),
            ranks: r.iter().enumerate().map(|(u, &x)| (format!("u{u:03}"), x)).collect(),
        }
    }

    #[test]
    fn mcnemar_matches_hand_computed_binomial_tails() {
        // b = 0, c = 5: 2 * (1/2)^5 = 0.0625.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12);
        // b = 2, c = 8: 2 * (1 + 10 + 45) / 1024 = 0.109375.
        assert!((mcnemar_exact(2, 8) - 0.109375).abs() < 1e-12);
        assert!((mcnemar_exact(8, 2) - 0.109375).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
    }

    #[test]
    fn values_counts_and_interval_of_a_hand_checked_pair() {
        // 4 users; K = 10. Method hits users 0, 1, 2 (ranks 0, 9, 3); baseline hits 0 and 3.
        let m = ranks("a", &[0, 9, 3, 50]);
        let b = ranks("b", &[0, 10, 40, 2]);
        let c = compare(&m, &b, &Settings { k: 10, resamples: 2000, seed: 1, ..Settings::default() }).unwrap();
        assert_eq!((c.users, c.hits_only_method, c.hits_only_baseline), (4, 2, 1));
        assert!((c.hr.method - 0.75).abs() < 1e-12 && (c.hr.baseline - 0.5).abs() < 1e-12);
        assert!((c.hr.relative.unwrap() - 0.5).abs() < 1e-12);
        // NDCG gains: method 1 + 1/log2(11) + 1/log2(5), baseline 1 + 1/log2(4) = 1.5.
        let gm = 1.0 + 1.0 / 11f64.log2() + 1.0 / 5f64.log2();
        assert!((c.ndcg.method - gm / 4.0).abs() < 1e-12);
        assert!((c.ndcg.relative.unwrap() - (gm / 1.5 - 1.0)).abs() < 1e-12);
        let (lo, hi) = c.hr.interval.unwrap();
        assert!(lo <= 0.5 && 0.5 <= hi && lo < hi, "interval {lo}..{hi}");
        // Discordant users 2 and 1: 2 * P(X <= 1) with X ~ Binomial(3, 1/2) = 2 * 4/8 = 1.
        assert_eq!(c.mcnemar_p, 1.0);
    }

    #[test]
    fn identical_methods_have_a_zero_width_interval_at_zero() {
        let r: Vec<u64> = (0..200).map(|u| (u * 7 % 31) as u64).collect();
        let c = compare(&ranks("a", &r), &ranks("b", &r), &Settings::default()).unwrap();
        assert_eq!(c.hr.relative, Some(0.0));
        assert_eq!(c.hr.interval, Some((0.0, 0.0)));
        assert_eq!(c.ndcg.interval, Some((0.0, 0.0)));
        assert_eq!(c.mcnemar_p, 1.0);
    }

    #[test]
    fn interval_narrows_with_more_users_and_is_seeded() {
        // Method hits 30% of users, baseline 20%, on n and 16 n users with the same pattern.
        let pattern = |n: usize, hit_from: usize| -> Vec<u64> {
            (0..n).map(|u| if (u % 10) < hit_from { 0 } else { 100 }).collect()
        };
        let s = Settings { k: 10, resamples: 4000, seed: 7, ..Settings::default() };
        let small = compare(&ranks("a", &pattern(100, 3)), &ranks("b", &pattern(100, 2)), &s).unwrap();
        let large = compare(&ranks("a", &pattern(1600, 3)), &ranks("b", &pattern(1600, 2)), &s).unwrap();
        let width = |c: &Comparison| c.hr.interval.map(|(lo, hi)| hi - lo).unwrap();
        assert!((small.hr.relative.unwrap() - 0.5).abs() < 1e-12);
        assert!(width(&large) < 0.5 * width(&small), "{} vs {}", width(&large), width(&small));
        // Every user the baseline hits the method hits too, so no resample can come out below 0.
        assert!(large.hr.interval.unwrap().0 > 0.0);
        let again = compare(&ranks("a", &pattern(100, 3)), &ranks("b", &pattern(100, 2)), &s).unwrap();
        assert_eq!(small, again);
        let other = compare(&ranks("a", &pattern(100, 3)), &ranks("b", &pattern(100, 2)), &Settings { seed: 8, ..s });
        assert_ne!(small.hr.interval, other.unwrap().hr.interval);
    }

    #[test]
    fn no_users_is_an_error_not_a_panic() {
        let e = compare(&ranks("a", &[]), &ranks("b", &[]), &Settings::default()).unwrap_err().to_string();
        assert!(e.contains("rank no users"), "{e}");
    }

    #[test]
    fn different_users_are_refused_with_both_names() {
        let m = ranks("a", &[0, 1, 2]);
        let mut b = ranks("b", &[0, 1, 2]);
        b.ranks.remove("u001");
        b.ranks.insert("zz".into(), 3);
        let e = compare(&m, &b, &Settings::default()).unwrap_err().to_string();
        assert!(e.contains("a (x.parquet)") && e.contains("b (x.parquet)") && e.contains("1 only in the first"), "{e}");
    }

    #[test]
    fn baselines_default_to_retrain_and_mean_and_names_resolve_by_suffix() {
        let all = vec![ranks("r:retrain", &[0]), ranks("s:mean", &[0]), ranks("s:eemu", &[0])];
        let p = pairs(&all, &[], &[], false).unwrap();
        let names: Vec<(String, String)> = p.iter().map(|(m, b)| (pool_name(m), pool_name(b))).collect();
        assert_eq!(
            names,
            vec![
                ("s:mean".to_string(), "r:retrain".to_string()),
                ("s:eemu".to_string(), "r:retrain".to_string()),
                ("s:eemu".to_string(), "s:mean".to_string()),
            ]
        );
        // A method that is also a baseline is compared with the other baselines not among the
        // methods (here s:eemu with r:retrain), and each pair of listed ones once.
        let methods = ["s:eemu".to_string(), "s:mean".to_string()];
        let baselines = ["s:eemu".to_string(), "s:mean".to_string(), "r:retrain".to_string()];
        let p = pairs(&all, &methods, &baselines, false).unwrap();
        let names: Vec<(String, String)> = p.iter().map(|(m, b)| (pool_name(m), pool_name(b))).collect();
        let want = [("s:mean", "s:eemu"), ("s:eemu", "r:retrain"), ("s:mean", "r:retrain")];
        assert_eq!(names, want.map(|(m, b)| (m.to_string(), b.to_string())));
        let twice = vec![ranks("a:eemu", &[0]), ranks("b:eemu", &[0])];
        let e = find(&twice, "eemu").unwrap_err().to_string();
        assert!(e.contains("ambiguous") && e.contains("a:eemu") && e.contains("b:eemu"), "{e}");
        assert!(find(&twice, "mean").unwrap_err().to_string().contains("a:eemu, b:eemu"));
    }

    #[test]
    fn pooled_runs_average_each_user_and_count_users_by_their_mean() {
        // Method at two seeds: run 1 hits users 0 and 1, run 2 users 0 and 2; baseline hits user 0.
        let (m1, m2, b) = (ranks("m1", &[0, 3, 50, 50]), ranks("m2", &[0, 50, 3, 50]), ranks("b", &[0, 50, 50, 50]));
        let c = compare_runs(&[&m1, &m2], &[&b], &Settings { k: 10, resamples: 500, seed: 3, ..Settings::default() })
            .unwrap();
        assert_eq!(c.method, "m1+m2");
        assert_eq!((c.users, c.method_runs, c.baseline_runs), (4, 2, 1));
        // Mean hit per user: 1, 0.5, 0.5, 0 -> 0.5; baseline 0.25.
        assert!((c.hr.method - 0.5).abs() < 1e-12 && (c.hr.baseline - 0.25).abs() < 1e-12);
        assert!((c.hr.relative.unwrap() - 1.0).abs() < 1e-12);
        let gm = (2.0 + 2.0 / 5f64.log2()) / 2.0 / 4.0;
        assert!((c.ndcg.method - gm).abs() < 1e-12, "{}", c.ndcg.method);
        // Users 1 and 2 have a higher mean hit for the method, none for the baseline.
        assert_eq!((c.hits_only_method, c.hits_only_baseline), (2, 0));
        // Differences 0, 0.5, 0.5, 0: the flipped sum is 0 half the time, so p is about 1/2.
        assert!((c.mcnemar_p - 0.5).abs() < 0.06, "{}", c.mcnemar_p);
    }

    #[test]
    fn pooled_p_value_tests_the_mean_not_the_count_of_users() {
        // Baseline: three runs, each hitting another third of 30 users (every user's mean 1/3,
        // HR 1/3). Method: one run hitting 12 of them (HR 0.4). 18 users have the higher mean on
        // the baseline's side, yet the method's HR is higher: no evidence for the baseline.
        let third =
            |k: usize| ranks(&format!("b{k}"), &(0..30).map(|u| if u % 3 == k { 0 } else { 99 }).collect::<Vec<_>>());
        let (b0, b1, b2) = (third(0), third(1), third(2));
        let some = ranks("m", &(0..30).map(|u| if u < 12 { 0 } else { 99 }).collect::<Vec<_>>());
        let s = Settings { k: 10, resamples: 4000, seed: 1, ..Settings::default() };
        let c = compare_runs(&[&some], &[&b0, &b1, &b2], &s).unwrap();
        assert!((c.hr.relative.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!((c.hits_only_method, c.hits_only_baseline), (12, 18));
        assert!(c.mcnemar_p > 0.3, "{}", c.mcnemar_p);
        // A method that hits every user is far above: no flip reaches its sum.
        let all = ranks("a", &[0; 30]);
        let c = compare_runs(&[&all], &[&b0, &b1, &b2], &s).unwrap();
        assert!(c.mcnemar_p <= 1.0 / 4001.0 + 1e-12, "{}", c.mcnemar_p);
        // On single runs of 0/1 hits the sign-flip test estimates McNemar's exact p-value.
        let (x, y) = (ranks("x", &[0, 0, 0, 0, 0, 0, 0, 99, 99, 0]), ranks("y", &[99, 99, 99, 99, 99, 99, 0, 0, 0, 0]));
        let exact = mcnemar_exact(6, 2);
        let flipped = sign_flip_p(&hits01(&x), &hits01(&y), &Settings { resamples: 20_000, ..s });
        assert!((flipped - exact).abs() < 0.02, "{flipped} vs {exact}");
    }

    fn hits01(m: &MethodRanks) -> Vec<f64> {
        m.ranks.values().map(|&r| if r < 10 { 1.0 } else { 0.0 }).collect()
    }

    #[test]
    fn pooled_interval_takes_in_the_spread_between_runs() {
        // Run 1 hits every user, run 2 none; the baseline hits every user. Whatever users are
        // drawn, the drawn pair of runs gives relative 0 (run 1 twice, p = 1/4), -0.5 (1/2) or
        // -1 (run 2 twice, 1/4), so the 95% interval is exactly [-1, 0] around -0.5.
        let (all, none, base) = (ranks("a", &[0; 50]), ranks("b", &[99; 50]), ranks("c", &[0; 50]));
        let s = Settings { k: 10, resamples: 2000, seed: 5, ..Settings::default() };
        let c = compare_runs(&[&all, &none], &[&base], &s).unwrap();
        assert_eq!(c.hr.relative, Some(-0.5));
        assert_eq!(c.hr.interval, Some((-1.0, 0.0)));
        // Taken one at a time, each run has a zero-width interval: the width comes from the runs.
        assert_eq!(compare(&all, &base, &s).unwrap().hr.interval, Some((0.0, 0.0)));
        assert_eq!(compare(&none, &base, &s).unwrap().hr.interval, Some((-1.0, -1.0)));
    }

    #[test]
    fn paired_runs_draw_the_same_positions_on_both_sides() {
        // The baseline's runs are copies of the method's, in the same order: drawn at the same
        // positions the two sides are equal in every resample, so the interval is exactly [0, 0].
        // Drawn apart, run 1 (all hits) meets run 2 (none) and the interval spans [-1, +inf).
        let (all, none) = (ranks("a1", &[0; 40]), ranks("a2", &[99; 40]));
        let (all_b, none_b) = (ranks("b1", &[0; 40]), ranks("b2", &[99; 40]));
        let apart = Settings { k: 10, resamples: 2000, seed: 4, ..Settings::default() };
        let paired = Settings { paired_runs: true, ..apart };
        let c = compare_runs(&[&all, &none], &[&all_b, &none_b], &paired).unwrap();
        assert_eq!(c.hr.relative, Some(0.0));
        assert_eq!(c.hr.interval, Some((0.0, 0.0)));
        assert_eq!(c.ndcg.interval, Some((0.0, 0.0)));
        assert!(c.runs_drawn_in_pairs);
        let a = compare_runs(&[&all, &none], &[&all_b, &none_b], &apart).unwrap();
        let (lo, hi) = a.hr.interval.unwrap();
        assert!(!a.runs_drawn_in_pairs);
        assert!(lo < -0.4 && hi > 0.4, "[{lo}, {hi}]");
        // Positions, not names, pair the runs: with the baseline listed in the other order, the
        // first position pairs all hits with none, and the interval is no longer [0, 0].
        let swapped = compare_runs(&[&all, &none], &[&none_b, &all_b], &paired).unwrap();
        assert_ne!(swapped.hr.interval, Some((0.0, 0.0)));
        // With one run on a side there is nothing to pair: the same numbers as drawn apart.
        let one = |s: &Settings| compare_runs(&[&all, &none], &[&all_b], s).unwrap();
        let (p1, a1) = (one(&paired), one(&apart));
        assert!(!p1.runs_drawn_in_pairs);
        assert_eq!((p1.hr, p1.ndcg, p1.mcnemar_p), (a1.hr, a1.ndcg, a1.mcnemar_p));
        let single = |s: &Settings| compare(&all, &none_b, s).unwrap();
        assert_eq!(single(&paired), single(&apart));
    }

    #[test]
    fn paired_runs_need_as_many_runs_on_each_side() {
        let r: Vec<MethodRanks> = (0..5).map(|i| ranks(&format!("r{i}"), &[0, 20, 3])).collect();
        let s = Settings { resamples: 10, paired_runs: true, ..Settings::default() };
        let e = compare_runs(&[&r[0], &r[1]], &[&r[2], &r[3], &r[4]], &s).unwrap_err().to_string();
        assert!(
            e.contains("--paired-runs") && e.contains("r0+r1 pools 2 runs") && e.contains("r2+r3+r4 pools 3"),
            "{e}"
        );
        assert!(compare_runs(&[&r[0], &r[1]], &[&r[2], &r[3], &r[4]], &Settings { paired_runs: false, ..s }).is_ok());
    }

    #[test]
    fn the_p_column_is_named_for_the_test_it_holds() {
        let (m1, m2, b) = (ranks("m1", &[0, 3, 50, 50]), ranks("m2", &[0, 50, 3, 50]), ranks("b", &[0, 50, 50, 50]));
        let s = Settings { k: 10, resamples: 200, seed: 3, ..Settings::default() };
        let header = |t: &str| t.lines().next().unwrap().to_string();
        let single = table(&[compare_runs(&[&m1], &[&b], &s).unwrap()], &s);
        assert!(header(&single).contains("McNemar p"), "{single}");
        assert!(!single.contains("sign-flip"), "{single}");
        let pooled = table(&[compare_runs(&[&m1, &m2], &[&b], &s).unwrap()], &s);
        assert!(!header(&pooled).contains("McNemar"), "{pooled}");
        assert!(header(&pooled).split_whitespace().any(|w| w == "p"), "{pooled}");
        assert!(pooled.contains("sign-flip test") && pooled.contains("p of single runs (McNemar)"), "{pooled}");
    }

    #[test]
    fn one_run_per_side_is_the_plain_comparison() {
        let (m, b) = (ranks("a", &[0, 9, 3, 50, 12, 1]), ranks("b", &[0, 10, 40, 2, 11, 5]));
        let s = Settings { k: 10, resamples: 3000, seed: 2, ..Settings::default() };
        let plain = compare(&m, &b, &s).unwrap();
        assert_eq!(compare_runs(&[&m], &[&b], &s).unwrap(), plain);
        assert_eq!((plain.hits_only_method, plain.hits_only_baseline), (2, 1));
        assert_eq!((plain.method_runs, plain.baseline_runs), (1, 1));
    }

    #[test]
    fn pooled_names_resolve_and_bad_pools_are_refused() {
        let all = vec![ranks("s0:mean", &[0, 1]), ranks("s1:mean", &[2, 3]), ranks("s0:eemu", &[0, 1])];
        let runs = find_runs(&all, "s0:mean+s1:mean").unwrap();
        assert_eq!(pool_name(&runs), "s0:mean+s1:mean");
        let p = pairs(&all, &["s0:eemu".into()], &["s0:mean+s1:mean".into()], false).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((pool_name(&p[0].0), p[0].1.len()), ("s0:eemu".to_string(), 2));
        let twice = find_runs(&all, "s0:mean+s0:mean").unwrap_err().to_string();
        assert!(twice.contains("names the run s0:mean twice"), "{twice}");
        assert!(find_runs(&all, "s0:mean++s1:mean").unwrap_err().to_string().contains("empty method name"));
        assert!(find_runs(&all, "s0:mean+s9:mean").unwrap_err().to_string().contains("no method s9:mean"));
        // A run of another split is refused, naming it.
        let mut other = ranks("s2:mean", &[0, 1]);
        other.ranks.insert("u999".into(), 0);
        let e = compare_runs(&[&all[2]], &[&all[0], &other], &Settings::default()).unwrap_err().to_string();
        assert!(e.contains("s2:mean") && e.contains("do not rank the same users"), "{e}");
    }

    #[test]
    fn a_label_prefix_with_a_star_pools_every_matching_run_in_file_order() {
        let all = vec![
            ranks("f2:eemu", &[5, 1, 60, 50, 0]),
            ranks("m2:mean", &[50, 0, 50, 50, 3]),
            ranks("f1:eemu", &[0, 20, 3, 50, 9]),
            ranks("m1:mean", &[0, 50, 50, 2, 40]),
            ranks("g1:eemu", &[0, 0, 0, 0, 0]),
            ranks("m3:mean", &[1, 1, 90, 90, 90]),
            ranks("x:odd*name", &[0, 0, 0, 0, 0]),
        ];
        let names = |spec: &str| pool_name(&find_runs(&all, spec).unwrap());
        // The order of the rank files, not of the labels; only labels that start with the prefix.
        assert_eq!(names("f*:eemu"), "f2:eemu+f1:eemu");
        assert_eq!(names("*:eemu"), "f2:eemu+f1:eemu+g1:eemu");
        assert_eq!(names("g1:eemu+f*:eemu"), "g1:eemu+f2:eemu+f1:eemu");
        assert_eq!(names("x:odd*name"), "x:odd*name", "a full name with * is found as it is");
        assert_eq!(names("g1:eemu+x:odd*name"), "g1:eemu+x:odd*name");
        // The same comparison as the runs named one by one.
        let s = Settings { k: 10, resamples: 500, seed: 7, paired_runs: true };
        let by_glob = pairs(&all, &["f*:eemu".into()], &["m1:mean+m2:mean".into()], true).unwrap();
        let by_name = pairs(&all, &["f2:eemu+f1:eemu".into()], &["m1:mean+m2:mean".into()], true).unwrap();
        assert_eq!(pool_name(&by_glob[0].0), pool_name(&by_name[0].0));
        assert_eq!(
            compare_runs(&by_glob[0].0, &by_glob[0].1, &s).unwrap(),
            compare_runs(&by_name[0].0, &by_name[0].1, &s).unwrap()
        );
        for bad in ["f*1:eemu", "f**:eemu", "f*:ee*mu", "f*", "f*:"] {
            let e = find_runs(&all, bad).unwrap_err().to_string();
            assert!(e.contains("* may only end the label"), "{bad}: {e}");
        }
        let e = find_runs(&all, "h*:eemu").unwrap_err().to_string();
        assert!(e.contains("h*:eemu matches no run") && e.contains("f2:eemu"), "{e}");
        assert!(find_runs(&all, "f*:eemu+f1:eemu").unwrap_err().to_string().contains("names the run f1:eemu twice"));
    }

    #[test]
    fn paired_runs_refuse_two_star_names_whose_labels_end_differently() {
        let all = vec![
            ranks("f1:eemu", &[0, 20, 3]),
            ranks("f2:eemu", &[5, 1, 60]),
            ranks("m1:mean", &[0, 50, 50]),
            ranks("m3:mean", &[1, 1, 90]),
            ranks("r2:retrain", &[1, 1, 1]),
            ranks("r1:retrain", &[1, 1, 1]),
        ];
        let e = pairs(&all, &["f*:eemu".into()], &["m*:mean".into()], true).unwrap_err().to_string();
        assert!(e.contains("--paired-runs") && e.contains("end in 1, 2 and 1, 3"), "{e}");
        // Labels that end alike but come in another order are refused too: positions pair runs.
        let e = pairs(&all, &["f*:eemu".into()], &["r*:retrain".into()], true).unwrap_err().to_string();
        assert!(e.contains("end in 1, 2 and 2, 1"), "{e}");
        // Drawn apart, nothing is paired, and runs named one by one are taken as named.
        assert_eq!(pairs(&all, &["f*:eemu".into()], &["m*:mean".into()], false).unwrap().len(), 1);
        assert_eq!(pairs(&all, &["f*:eemu".into()], &["m1:mean+m3:mean".into()], true).unwrap().len(), 1);
    }
}
