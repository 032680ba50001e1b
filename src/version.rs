//! Version report: eemu, the libtorch it was built against, and whether CUDA is usable.

/// libtorch version recorded by the build script.
pub const LIBTORCH_VERSION: &str = env!("EEMU_LIBTORCH_VERSION");

/// `eemu --version` text.
pub fn report() -> String {
    let cuda = if tch::Cuda::is_available() {
        format!("available ({} device(s))", tch::Cuda::device_count())
    } else {
        "not available".to_string()
    };
    format!(
        "eemu {}\nlibtorch {LIBTORCH_VERSION}\nCUDA {cuda}\nCPU kernels {}",
        env!("CARGO_PKG_VERSION"),
        crate::engine::cpu_kernels()
    )
}
