//! The traces that items of leader-only work leave (see `examples/replica/items.rs`), read back and
//! checked: no two processes' items may overlap on one lock.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Every item as (lock, pid, start, end); an item a process never finished ends when the process was
/// killed or seen to exit. Panics on two items of different processes that overlap on one lock (with
/// `per_worker`, a worker number is its lock, as in an elector set's replicas; else there is one lock).
/// Returns how many items there were.
pub fn check_no_overlap(items: &Path, ended: &HashMap<u32, u128>, per_worker: bool) -> usize {
    let text = std::fs::read_to_string(items).unwrap_or_default();
    let mut open: HashMap<(u32, u32), u128> = HashMap::new();
    let mut done: Vec<(u32, u32, u128, u128)> = Vec::new();
    let lock = |worker: u32| if per_worker { worker } else { 0 };
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (mark, pid, worker, t) = (
            f[0],
            f[1].parse::<u32>().unwrap(),
            f[2].parse::<u32>().unwrap(),
            f[4].parse::<u128>().unwrap(),
        );
        match mark {
            "S" => {
                open.insert((pid, worker), t);
            }
            _ => {
                let start = open.remove(&(pid, worker)).expect("an end after its start");
                done.push((lock(worker), pid, start, t));
            }
        }
    }
    for ((pid, worker), start) in open {
        let end = ended
            .get(&pid)
            .copied()
            .unwrap_or_else(|| panic!("process {pid} left an item unfinished while running"));
        done.push((lock(worker), pid, start, end));
    }
    done.sort_by_key(|d| (d.0, d.2));
    for (i, a) in done.iter().enumerate() {
        for b in &done[i + 1..] {
            if b.0 != a.0 || b.2 >= a.3 {
                // Sorted by lock and start: nothing after `b` starts before `a` ends on a's lock.
                break;
            }
            assert!(
                a.1 == b.1,
                "items of two replicas overlap on lock {} by {:?}: process {} from {} to {}, process {} from {} to {}",
                a.0,
                Duration::from_nanos((a.3.min(b.3) - b.2) as u64),
                a.1,
                a.2,
                a.3,
                b.1,
                b.2,
                b.3
            );
        }
    }
    done.len()
}
