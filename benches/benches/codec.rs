//! Benchmark: the y-protocols wire codec (`sync_core::yjs::codec`), encoding and decoding one frame
//! per message kind and payload size, plus decoding an awareness payload (the relay checks every
//! state is JSON before relaying it).
//!
//! Payloads are opaque to the codec, so they are filler bytes of the stated size; the sizes are a
//! keystroke (32 B), a paragraph or small step 2 (1 KiB) and a large step 2 (64 KiB).

use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use weft_sync_core::yjs::awareness::{decode_update, encode_update};
use weft_sync_core::yjs::codec::{decode_frame, encode_frame};
use weft_sync_core::yjs::{AwarenessEntry, Message};

const SIZES: [usize; 3] = [32, 1024, 64 * 1024];

fn filler(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

fn messages(len: usize) -> [(&'static str, Message); 4] {
    [
        ("sync_step1", Message::SyncStep1(filler(len))),
        ("sync_step2", Message::SyncStep2(filler(len))),
        ("update", Message::Update(filler(len))),
        ("awareness", Message::Awareness(filler(len))),
    ]
}

fn codec_bench(c: &mut Criterion) {
    let mut encode = c.benchmark_group("codec_encode");
    encode.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for len in SIZES {
        for (kind, message) in messages(len) {
            encode.throughput(Throughput::Bytes(len as u64));
            encode.bench_with_input(BenchmarkId::new(kind, len), &message, |b, message| {
                b.iter(|| encode_frame(std::iter::once(message)))
            });
        }
    }
    encode.finish();

    let mut decode = c.benchmark_group("codec_decode");
    decode.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for len in SIZES {
        for (kind, message) in messages(len) {
            let frame = message.encode();
            decode.throughput(Throughput::Bytes(frame.len() as u64));
            decode.bench_with_input(BenchmarkId::new(kind, len), &frame, |b, frame| {
                // Holds: the frame was just encoded by the same codec.
                b.iter(|| decode_frame(frame).expect("the frame decodes"))
            });
        }
    }
    // What a relay does with a presence update besides framing: parse entries and check the JSON.
    for clients in [1usize, 10] {
        let entries: Vec<AwarenessEntry> = (0..clients as u64)
            .map(|client_id| AwarenessEntry {
                client_id,
                clock: 42,
                state: Bytes::from(format!(
                    r##"{{"user":{{"name":"user-{client_id}","color":"#30bced"}},"cursor":{{"anchor":12,"head":19}}}}"##
                )),
            })
            .collect();
        let payload = encode_update(entries.iter());
        decode.throughput(Throughput::Bytes(payload.len() as u64));
        decode.bench_with_input(BenchmarkId::new("awareness_entries", clients), &payload, |b, payload| {
            // Holds: the payload was just encoded from valid JSON states.
            b.iter(|| decode_update(payload).expect("the awareness update decodes"))
        });
    }
    decode.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the macros generate an
// undocumented `pub fn` that the workspace's `missing_docs` lint rejects.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    codec_bench(&mut criterion);
    criterion.final_summary();
}
