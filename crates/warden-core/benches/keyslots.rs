//! Key-slot micro-benchmarks: what opening each kind of slot costs (the KDF dominates), what a
//! slot costs to make, what adding a key version to every slot costs (a rotation, per slot), and
//! what re-wrapping a sealed stream's header costs (a rotation, per file).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use warden_core::kdf::KdfParams;
use warden_core::keyring::Purpose;
use warden_core::keyslots::{Holder, KeyRing, Owner, RecoveryKey, SlotFile, SlotSecret};
use warden_core::password::{Argon2Params, Password};
use warden_core::rbac::Role;
use warden_core::secret::{Key32, Passphrase};

fn slots(c: &mut Criterion) {
    let ring = KeyRing::generate();
    let mut file = SlotFile::new("2026-12-01T00:00:00Z".into(), &ring).unwrap();
    let passphrase = Passphrase::new("a master passphrase for the bench".into());
    let password = Password::new("Bench-User-Password-1".into());
    let recovery = RecoveryKey::generate();
    let master = file
        .make_slot(
            Owner::Master,
            Holder::All,
            &SlotSecret::Passphrase(&passphrase),
            Some(&KdfParams::default_pbkdf2()),
            &ring,
            "2026-12-01T00:00:00Z".into(),
        )
        .unwrap();
    let user_kdf = Argon2Params::default().as_kdf();
    let user = file
        .make_slot(
            file.user("olga"),
            Holder::Role(Role::Operator),
            &SlotSecret::Password(&password),
            Some(&user_kdf),
            &ring,
            "2026-12-01T00:00:00Z".into(),
        )
        .unwrap();
    let rec = file
        .make_slot(
            Owner::Recovery,
            Holder::All,
            &SlotSecret::Key(recovery.key()),
            None,
            &ring,
            "2026-12-01T00:00:00Z".into(),
        )
        .unwrap();
    for slot in [master.clone(), user.clone(), rec.clone()] {
        file.add_slot(slot);
    }

    let mut group = c.benchmark_group("unlock");
    group.sample_size(10);
    group.bench_function("master_pbkdf2_600k", |b| {
        b.iter(|| {
            file.unlock(black_box(&master), &SlotSecret::Passphrase(&passphrase))
                .unwrap()
        })
    });
    group.bench_function("user_argon2id_64MiB_t3_p4", |b| {
        b.iter(|| {
            file.unlock(black_box(&user), &SlotSecret::Password(&password))
                .unwrap()
        })
    });
    group.bench_function("recovery_hkdf", |b| {
        b.iter(|| {
            file.unlock(black_box(&rec), &SlotSecret::Key(recovery.key()))
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("make_slot");
    group.sample_size(10);
    group.bench_function("recovery_hkdf_5_keys", |b| {
        b.iter(|| {
            file.make_slot(
                Owner::Recovery,
                Holder::All,
                &SlotSecret::Key(recovery.key()),
                None,
                &ring,
                "2026-12-01T00:00:00Z".into(),
            )
            .unwrap()
        })
    });
    group.finish();

    // A rotation adds the next version to every slot that carries the key: one ECDH + HKDF +
    // AES-GCM per slot, from the slot's public key.
    let mut many = SlotFile::new("2026-12-01T00:00:00Z".into(), &ring).unwrap();
    for i in 0..100 {
        let slot = many
            .make_slot(
                many.user(&format!("user{i}")),
                Holder::Role(Role::Operator),
                &SlotSecret::Key(recovery.key()),
                None,
                &ring,
                "2026-12-01T00:00:00Z".into(),
            )
            .unwrap_or_else(|_| unreachable!());
        many.add_slot(slot);
    }
    let new = Key32::random();
    let mut group = c.benchmark_group("rotation");
    group.sample_size(10);
    group.bench_function("begin_rotation_100_slots", |b| {
        b.iter(|| {
            let mut copy = many.clone();
            copy.begin_rotation(Purpose::Recordings, black_box(&new))
                .unwrap()
        })
    });
    let old = Key32::random();
    let mut sealed = Vec::new();
    let mut w =
        warden_core::stream::SealedWriter::new(&mut sealed, Purpose::Recordings, &old, 65536)
            .unwrap();
    w.write_plaintext(&[0u8; 1000]).unwrap();
    w.finish().unwrap();
    group.bench_function("rewrap_one_header", |b| {
        b.iter(|| {
            warden_core::stream::rewrap_header(black_box(&sealed), Purpose::Recordings, &old, &new)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, slots);
criterion_main!(benches);
