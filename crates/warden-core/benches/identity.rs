//! Identity micro-benchmarks: what one login costs.
//!
//! - TOTP verification with the default ±1 window (three HMACs and constant-time compares),
//!   for a code that matches and one that does not, per algorithm.
//! - Argon2id verification at seed 002's parameters (t=3, m=64 MiB, p=4), the cost of every
//!   password login and of each entry in the reuse check.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use warden_core::password::{Argon2Params, Password, PasswordHash};
use warden_core::totp::{Algorithm, TotpParams, TotpSecret, TotpVerdict};

fn totp_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("totp_verify_window_1");
    let now = 1_700_000_000;
    for algorithm in Algorithm::ALL {
        let params = TotpParams {
            algorithm,
            ..TotpParams::default()
        };
        let secret = TotpSecret::generate();
        let code = params.code_at(&secret, now);
        assert!(matches!(
            params.verify(&secret, code.expose_secret(), now, None),
            TotpVerdict::Accepted { .. }
        ));
        group.bench_function(format!("{algorithm}_match"), |b| {
            b.iter(|| {
                params.verify(
                    black_box(&secret),
                    black_box(code.expose_secret()),
                    black_box(now),
                    black_box(Some(1)),
                )
            })
        });
        group.bench_function(format!("{algorithm}_no_match"), |b| {
            b.iter(|| {
                params.verify(
                    black_box(&secret),
                    black_box("000000"),
                    black_box(now),
                    black_box(Some(1)),
                )
            })
        });
    }
    group.finish();
}

fn argon2id_verify(c: &mut Criterion) {
    let params = Argon2Params::default();
    let password = Password::new("Correct-Horse-Battery-9".to_owned());
    let hash = PasswordHash::create(&password, &params).expect("hashing works");
    let mut group = c.benchmark_group("argon2id_verify");
    // Each iteration takes a good fraction of a second: keep the run short on a 2-core box.
    group.sample_size(10);
    group.bench_function("t3_m65536_p4", |b| {
        b.iter(|| hash.verify(black_box(&password)))
    });
    group.finish();
}

criterion_group!(benches, totp_verify, argon2id_verify);
criterion_main!(benches);
