//! Fuzzing of every decoder that faces the network, with the stable
//! toolchain: each target is run on its corpus (`fuzz/corpus/<target>/`,
//! kept in the tree) and then on mutations of it for a bounded time. The
//! targets live in `tests/fuzz.rs` of the crate that owns the decoder (a
//! test binary can link one plugin only): `stix` (objects, patterns),
//! `plugins/zmq` (frames, management requests), `plugins/zeek` (Broker
//! values, handshakes, envelopes), `plugins/misp` (notifications). A
//! target must never panic; some also check a property (a canonical form
//! parses back to itself). A failing input is written to
//! `target/fuzz-failures/` and reported with its hex, so it can be added to
//! the corpus once fixed.
//!
//! `FUZZ_SECONDS` (per target, default 2) and `FUZZ_SEED` (default: from
//! the clock, printed) control a run.

#![forbid(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One decoder under test: it gets arbitrary bytes and must not panic.
pub struct Target {
    /// Also the corpus directory's name.
    pub name: &'static str,
    /// Runs the decoder; panics on a broken property.
    pub run: fn(&[u8]),
}

/// The test body of a fuzz target: runs it for `FUZZ_SECONDS` (default 2)
/// with `FUZZ_SEED` (default from the clock), prints what it did, and
/// fails with every input that panicked (also saved under
/// `target/fuzz-failures/`).
pub fn run_target(name: &'static str, run: fn(&[u8])) {
    let secs: f64 = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let failures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
    let report = fuzz(&Target { name, run }, Duration::from_secs_f64(secs), seed, &failures);
    println!(
        "{}: {} corpus inputs, {} executions in {secs} s, seed {seed} (FUZZ_SEED={seed} repeats the run)",
        report.target, report.corpus, report.executions
    );
    assert!(report.failures.is_empty(), "{} panicked on:\n{}", report.target, report.failures.join("\n"));
}

/// xorshift64*: a small, fast, seedable generator (not for secrets).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Fragments that tend to reach deep into JSON, STIX and Broker decoders.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"\"type\": \"indicator\"",
    b"\"pattern\": \"[ipv4-addr:value = '1.2.3.4']\"",
    b" AND ",
    b" OR ",
    b" FOLLOWEDBY ",
    b" WITHIN 5 SECONDS",
    b" REPEATS 2 TIMES",
    b"[",
    b"']",
    b"'",
    b"\\'",
    b"t'2020-01-01T00:00:00Z'",
    b"h'00'",
    b"b'AA=='",
    b"MATCHES",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff\xff\xff\xff\xff",
    b"stix2/indicator ",
    b"stix2/sighting ",
    b"threatbus/snapshotenvelope ",
];

/// One random change of `input`, sometimes using `other` (another corpus
/// entry).
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'[', b' '][rng.below(9)];
            }
            2 => {
                let i = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                out.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                let chunk = out[a..b].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            6 => {
                let cut = rng.below(len + 1);
                out.truncate(cut);
            }
            7 => {
                // Deep nesting.
                let depth = 1 + rng.below(2_000);
                let at = rng.below(len + 1);
                let open = [b'[', b'{'][rng.below(2)];
                out.splice(at..at, std::iter::repeat_n(open, depth));
            }
            _ => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(i..i, bytes);
            }
        }
    }
    out.truncate(max_len);
    out
}

/// The corpus of a target: every file in `fuzz/corpus/<name>/`.
pub fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("corpus file"))).collect()
}

/// What one fuzzing run of a target did.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub corpus: usize,
    pub executions: u64,
    /// Inputs that panicked (hex, shortened) and where they were saved.
    pub failures: Vec<String>,
}

fn hex(data: &[u8]) -> String {
    data.iter().take(512).map(|b| format!("{b:02x}")).collect()
}

/// Runs `target` on its corpus, then on mutations for `budget`.
pub fn fuzz(target: &Target, budget: Duration, seed: u64, failures_dir: &Path) -> Report {
    let corpus = corpus(target.name);
    assert!(!corpus.is_empty(), "the corpus of {} is empty", target.name);
    let mut report = Report { target: target.name, corpus: corpus.len(), executions: 0, failures: Vec::new() };
    let attempt = |input: &[u8], report: &mut Report| {
        report.executions += 1;
        if catch_unwind(AssertUnwindSafe(|| (target.run)(input))).is_err() {
            let _ = std::fs::create_dir_all(failures_dir);
            let file = failures_dir.join(format!("{}-{}", target.name, report.failures.len()));
            let _ = std::fs::write(&file, input);
            report.failures.push(format!("{} ({} bytes): {}", file.display(), input.len(), hex(input)));
        }
    };
    for (_, input) in &corpus {
        attempt(input, &mut report);
    }
    let mut rng = Rng::new(seed ^ target.name.len() as u64 ^ (target.name.as_bytes()[0] as u64) << 32);
    let deadline = Instant::now() + budget;
    while Instant::now() < deadline && report.failures.len() < 10 {
        for _ in 0..64 {
            let a = &corpus[rng.below(corpus.len())].1;
            let b = &corpus[rng.below(corpus.len())].1;
            let mut input = mutate(&mut rng, a, b, 64 << 10);
            if rng.below(4) == 0 {
                input = mutate(&mut rng, &input, b, 64 << 10);
            }
            attempt(&input, &mut report);
        }
    }
    report
}
