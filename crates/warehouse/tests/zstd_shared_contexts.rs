//! The patched zstd (`vendor/zstd/PATCH.md`): a bulk compressor or decompressor without a
//! dictionary borrows its thread's context. These tests hold it to the published
//! behaviour: the same bytes as a fresh context, whatever jobs the thread ran before.

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::{CCtx, CParameter};

/// Compressible bytes of `n` (words repeated with a drift), different per `seed`.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 6] = [
        b"customer ",
        b"phone ",
        b"+49 30 1234 ",
        b"rep-17 ",
        b"2026-12-07 ",
        b"ok ",
    ];
    let mut out = Vec::with_capacity(n);
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    while out.len() < n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(words[(x >> 33) as usize % words.len()]);
        out.push(b'a' + (x >> 59) as u8);
    }
    out.truncate(n);
    out
}

/// What zstd writes with a context of its own, created for this job.
fn reference(input: &[u8], level: i32, dict: &[u8], checksum: bool) -> Vec<u8> {
    let mut ctx = CCtx::create();
    ctx.set_parameter(CParameter::CompressionLevel(level))
        .unwrap();
    ctx.set_parameter(CParameter::ChecksumFlag(checksum))
        .unwrap();
    ctx.load_dictionary(dict).unwrap();
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
    ctx.compress2(&mut out, input).unwrap();
    out
}

const LEVELS: [i32; 6] = [3, 1, 19, -1, 0, 9];
const SIZES: [usize; 5] = [0, 1, 700, 64 << 10, 1 << 20];

#[test]
fn a_shared_context_writes_what_a_fresh_one_writes_at_every_level() {
    // Levels and sizes interleaved on one thread: each job finds the context as the
    // previous job (another level, another size) left it.
    for (i, &size) in SIZES.iter().enumerate() {
        for (j, &level) in LEVELS.iter().enumerate() {
            let input = data(size, (i * 10 + j) as u64);
            let got = Compressor::new(level).unwrap().compress(&input).unwrap();
            assert_eq!(
                got,
                reference(&input, level, &[], false),
                "level {level}, {size} bytes"
            );
            assert_eq!(zstd::bulk::compress(&input, level).unwrap(), got);
            let back = Decompressor::new()
                .unwrap()
                .decompress(&got, size.max(1))
                .unwrap();
            assert_eq!(back, input, "level {level}, {size} bytes");
        }
    }
    // One compressor kept across jobs and levels (what a parquet column writer does).
    let mut c = Compressor::new(5).unwrap();
    let input = data(100_000, 7);
    assert_eq!(
        c.compress(&input).unwrap(),
        reference(&input, 5, &[], false)
    );
    c.set_compression_level(2).unwrap();
    assert_eq!(
        c.compress(&input).unwrap(),
        reference(&input, 2, &[], false)
    );
    assert_eq!(
        Compressor::default().compress(&input).unwrap(),
        reference(&input, 0, &[], false)
    );
}

#[test]
fn threads_sharing_nothing_write_the_same_bytes() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for k in 0..20u64 {
                    let level = LEVELS[(t + k as usize) % LEVELS.len()];
                    let input = data(1_000 + (k as usize * 5_000), t as u64 * 100 + k);
                    let got = Compressor::new(level).unwrap().compress(&input).unwrap();
                    assert_eq!(got, reference(&input, level, &[], false));
                    let back = Decompressor::new()
                        .unwrap()
                        .decompress(&got, input.len())
                        .unwrap();
                    assert_eq!(back, input);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn a_failed_job_leaves_the_next_one_whole() {
    let input = data(50_000, 1);
    // Too small a destination: compression fails and the frame is abandoned.
    let mut small = [0u8; 16];
    assert!(
        Compressor::new(3)
            .unwrap()
            .compress_to_buffer(&input, &mut small[..])
            .is_err()
    );
    assert_eq!(
        Compressor::new(3).unwrap().compress(&input).unwrap(),
        reference(&input, 3, &[], false)
    );
    // Garbage, then a truncated frame: decompression fails, then works again.
    let mut d = Decompressor::new().unwrap();
    assert!(d.decompress(b"not a zstd frame at all", 100).is_err());
    let good = reference(&input, 3, &[], false);
    assert!(d.decompress(&good[..good.len() / 2], input.len()).is_err());
    assert_eq!(d.decompress(&good, input.len()).unwrap(), input);
    assert_eq!(
        Decompressor::new()
            .unwrap()
            .decompress(&good, input.len())
            .unwrap(),
        input
    );
}

#[test]
fn dictionaries_and_parameters_keep_their_own_context() {
    let dict = data(4_096, 99);
    let input = data(30_000, 5);
    // A dictionary: the compressor's own context, and it does not leak into the thread's.
    let with = Compressor::with_dictionary(3, &dict)
        .unwrap()
        .compress(&input)
        .unwrap();
    assert_eq!(with, reference(&input, 3, &dict, false));
    let without = Compressor::new(3).unwrap().compress(&input).unwrap();
    assert_eq!(without, reference(&input, 3, &[], false));
    assert_ne!(with, without);
    let back = Decompressor::with_dictionary(&dict)
        .unwrap()
        .decompress(&with, input.len())
        .unwrap();
    assert_eq!(back, input);
    assert!(
        Decompressor::new()
            .unwrap()
            .decompress(&with, input.len())
            .is_err()
    );
    // A parameter: likewise.
    let mut c = Compressor::new(3).unwrap();
    c.include_checksum(true).unwrap();
    assert_eq!(c.compress(&input).unwrap(), reference(&input, 3, &[], true));
    assert_eq!(
        Compressor::new(3).unwrap().compress(&input).unwrap(),
        reference(&input, 3, &[], false)
    );
    // A level set after the own context exists still applies to it.
    c.set_compression_level(7).unwrap();
    assert_eq!(c.compress(&input).unwrap(), reference(&input, 7, &[], true));
    let mut d = Decompressor::new().unwrap();
    d.window_log_max(27).unwrap();
    assert_eq!(d.decompress(&without, input.len()).unwrap(), input);
}
