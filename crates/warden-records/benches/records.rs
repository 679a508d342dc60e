//! Record writes and reads per second, each with its audit work (a write appends its event in
//! the same transaction; a read that opens PHI appends `record.read`). Figures in
//! docs/BENCHMARKS.md. Run: `cargo bench -p warden-records --bench records`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::json;
use support::{fields, Env};

fn main() {
    let env = Env::new();
    let mut store = env.store();
    let olga = env.session(&mut store, "olga");
    let n = 2000;
    let started = Instant::now();
    for i in 0..n {
        olga.put(
            &mut store,
            "treatments",
            &format!("t-{i}"),
            &fields(
                json!({"patient": "p-1", "energy_j": 1.5, "wavelength_nm": 1064,
                           "outcome": "no adverse events", "notes": "tolerated well"}),
            ),
        )
        .unwrap();
    }
    let writes = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..n {
        olga.get(&mut store, "treatments", &format!("t-{i}"), None)
            .unwrap();
    }
    let reads = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "records: {n} writes with PHI, {writes:.0}/s; {n} PHI reads (each audited), {reads:.0}/s"
    );
}
