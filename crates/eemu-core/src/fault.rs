//! Crash injection for the crash-safety tests. `EEMU_FAIL_AT=<point>` makes the process exit at
//! once (`_exit(86)`: no destructors, no exit handlers, no clean-up, other threads stopped
//! mid-work) when it reaches the named point, as a `kill -9` there would. Unset, every check is a no-op. The points:
//!
//! | point              | where                                                                  |
//! |--------------------|------------------------------------------------------------------------|
//! | `ledger-appended`  | `forget`: the requests are durable in the ledger, nothing applied       |
//! | `ledger-applying`  | the outcome of the pending entries is recorded, the dataset not replaced|
//! | `dataset-published`| the filtered dataset and manifest are published, the ledger not redacted|
//! | `ledger-applied`   | the ledger is redacted; no shard retrained yet                          |
//! | `shard-trained`    | the first retrained shard's model is written                            |
//! | `run-staged`       | the run's files are written under the temporary name, not committed     |
//! | `run-published`    | the run is published; superseded runs not yet deleted, no report        |
//! | `report-written`   | the unlearning report is written; the ledger does not say so yet        |

/// Exit status of a simulated crash.
pub const EXIT_CODE: i32 = 86;

/// The environment variable naming the point to crash at.
pub const VARIABLE: &str = "EEMU_FAIL_AT";

/// Every point, in the order a `forget` reaches them.
pub const POINTS: [&str; 8] = [
    "ledger-appended",
    "ledger-applying",
    "dataset-published",
    "ledger-applied",
    "shard-trained",
    "run-staged",
    "run-published",
    "report-written",
];

/// Exits the process when `EEMU_FAIL_AT` names `point`.
pub fn point(point: &str) {
    debug_assert!(POINTS.contains(&point), "unknown fault point {point}");
    if std::env::var(VARIABLE).is_ok_and(|v| v == point) {
        eprintln!("{VARIABLE}={point}: simulated crash");
        // SAFETY: _exit ends the process immediately; nothing runs after it.
        unsafe { libc::_exit(EXIT_CODE) }
    }
}
