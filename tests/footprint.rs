//! Footprint: `is_leader()` allocates nothing, and an elector is one thread (two with a watch).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::threads_named;
use kube_elector::LeaderElector;
use kube_elector::testing::ApiServer;

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn is_leader_allocates_nothing_and_an_elector_is_one_thread() {
    let server = ApiServer::start().unwrap();
    let before = threads_named("kube-elector");
    let h = LeaderElector::builder(server.config(), "footprint")
        .timing(common::timing(2, 1000, 100))
        .watch(false)
        .start()
        .unwrap();
    let status = h.status();
    let start = std::time::Instant::now();
    while !h.is_leader() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let allocations = ALLOCATIONS.with(Cell::get);
    let mut leading = 0;
    for _ in 0..100_000 {
        leading += usize::from(h.is_leader()) + usize::from(status.is_leader());
    }
    assert_eq!(
        ALLOCATIONS.with(Cell::get),
        allocations,
        "is_leader() must not allocate"
    );
    assert_eq!(leading, 200_000);
    if cfg!(target_os = "linux") {
        assert_eq!(
            threads_named("kube-elector") - before,
            1,
            "one renew thread without a watch"
        );
    }
    h.stop().unwrap();

    let w = LeaderElector::builder(server.config(), "footprint-watch")
        .timing(common::timing(2, 1000, 100))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    if cfg!(target_os = "linux") {
        assert_eq!(
            threads_named("kube-elector") - before,
            2,
            "the default watch adds one thread"
        );
    }
    w.stop().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    if cfg!(target_os = "linux") {
        assert_eq!(
            threads_named("kube-elector"),
            before,
            "both end with stop()"
        );
    }
}
