//! Every allocation of a process that links eemu comes from mimalloc (src/lib.rs), libtorch's
//! tensor buffers included: glibc's malloc fragments under training's allocation pattern
//! (docs/benchmarks.md, "The allocator").
use std::ffi::c_void;

// Linking eemu brings its global allocator, and mimalloc with it, into this test binary.
extern crate eemu;

extern "C" {
    /// mimalloc's own query: whether `p` points into memory mimalloc manages.
    fn mi_is_in_heap_region(p: *const c_void) -> bool;
}

fn in_mimalloc(p: *const c_void) -> bool {
    // SAFETY: a pure query on an address; mimalloc is linked in through eemu's global allocator.
    unsafe { mi_is_in_heap_region(p) }
}

#[test]
fn libtorch_buffers_and_rust_allocations_come_from_mimalloc() {
    // libtorch's CPU allocator calls posix_memalign: small and multi-megabyte buffers.
    for n in [16i64, 1 << 20, 1 << 24] {
        let t = tch::Tensor::zeros([n], (tch::Kind::Float, tch::Device::Cpu));
        assert!(in_mimalloc(t.data_ptr()), "a libtorch buffer of {n} floats is not mimalloc's");
    }
    let v = vec![0u8; 1 << 20];
    assert!(in_mimalloc(v.as_ptr().cast()), "a Rust Vec is not mimalloc's");
    // The check can say no: an address on the stack is not in mimalloc's heap.
    let local = 0u64;
    assert!(!in_mimalloc((&local as *const u64).cast()), "a stack address counted as mimalloc's");
}
