//! Sealed-stream throughput in memory (no file I/O): seal and open 64 MiB with 64 KiB segments.
//! Compare with `openssl speed -evp aes-256-gcm` (see docs/BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warden_core::keyring::Purpose;
use warden_core::secret::Key32;
use warden_core::stream::{open_to, SealedReader, SealedWriter, DEFAULT_SEGMENT_SIZE};

const LEN: usize = 64 * 1024 * 1024;

fn bench(c: &mut Criterion) {
    let key = Key32::from_bytes([7; 32]);
    let data = vec![0xA5u8; LEN];
    let mut sealed = Vec::with_capacity(LEN + LEN / 1000 + 4096);
    let mut group = c.benchmark_group("sealed_stream");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(10);
    group.bench_function("seal_64MiB", |b| {
        b.iter(|| {
            sealed.clear();
            let mut writer =
                SealedWriter::new(&mut sealed, Purpose::Recordings, &key, DEFAULT_SEGMENT_SIZE)
                    .unwrap();
            writer.write_plaintext(&data).unwrap();
            writer.finish().unwrap();
        })
    });
    let mut out = Vec::with_capacity(LEN);
    group.bench_function("open_64MiB", |b| {
        b.iter(|| {
            out.clear();
            let mut reader = SealedReader::new(&sealed[..], Purpose::Recordings, &key).unwrap();
            open_to(&mut reader, &mut out, |_| {}).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
