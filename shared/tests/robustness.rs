//! Property tests: the frame decoder and the policy compiler take any input, return a value
//! (never panic), and round-trip what they should. Bounded case counts keep CI fast; each run
//! draws new cases, and failures are saved under `proptest-regressions/` in the repo.

#![allow(clippy::unwrap_used)]

use holdfast_shared::event::{
    Action, ContentSummary, EventBody, FileActivity, RuleMatch, SealedEvent, Severity, GENESIS,
};
use holdfast_shared::policy::PolicySet;
use holdfast_shared::time::UnixMs;
use holdfast_shared::wire::{self, Decoder, Message};
use proptest::prelude::*;

fn event(seq: u64, path: String, records: u64) -> SealedEvent {
    let body = EventBody::File(FileActivity {
        size: Some(records),
        sha256: Some("0".repeat(64)),
        summary: Some(ContentSummary {
            file_type: "csv".into(),
            records,
            ..Default::default()
        }),
        rules: vec![RuleMatch {
            id: "r".into(),
            severity: Severity::High,
        }],
        ..FileActivity::new(Action::Created, path)
    });
    SealedEvent::seal(seq, UnixMs(seq as i64), "u", GENESIS, &body).unwrap()
}

/// The files of a corpus directory (`shared/tests/corpus/<name>`), sorted by name.
fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

#[test]
fn frame_corpus_decodes_to_values() {
    for (name, bytes) in corpus("frames") {
        let got = wire::decode(&bytes);
        // Only the one well-formed sample decodes; everything else is a clear error.
        if name.ends_with("/ack.bin") {
            assert_eq!(got, Ok(Message::Ack { through_seq: 42 }), "{name}");
        } else {
            assert!(got.is_err(), "{name} decoded: {got:?}");
        }
    }
}

#[test]
fn policy_corpus_fails_with_locations() {
    for (name, bytes) in corpus("policies") {
        let src = String::from_utf8(bytes).unwrap();
        let errs = PolicySet::compile(&[("p.toml", &src)], "/home/u")
            .err()
            .unwrap_or_else(|| panic!("{name} compiled"));
        for e in &errs.0 {
            assert!(e.line >= 1 && e.column >= 1, "{name}: {e}");
        }
    }
}

const POLICY: &str = "[[rule]]\nid = \"r\"\nseverity = \"high\"\nactions = [\"created\"]\npaths = [\"~/Downloads/**\"]\nfile_types = [\"csv\"]\n[rule.content]\nmin_records = 50\nmin_findings = { email = 3 }\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics_on_junk(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = wire::decode(&bytes);
        let mut d = Decoder::default();
        if d.push(&bytes).is_ok() {
            while let Ok(Some(_)) = d.next_message() {}
        }
    }

    #[test]
    fn mutated_frames_decode_to_values(seq in 1u64..1000, path in "[a-z/]{0,40}", flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let msg = Message::EventBatch { events: vec![event(seq, path, 7)] };
        let mut bytes = wire::encode(&msg).unwrap();
        prop_assert_eq!(wire::decode(&bytes).unwrap(), msg);
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] ^= b;
        }
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn mutated_corpus_frames_decode_to_values(pick in any::<usize>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in any::<usize>()) {
        let files = corpus("frames");
        let mut bytes = files[pick % files.len()].1.clone();
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] ^= b;
        }
        let _ = wire::decode(&bytes[..cut % (bytes.len() + 1)]);
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn classifiers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096), ext in 0usize..6) {
        // Every text reader, fed junk with quotes, separators and braces in any place, ends.
        let name = ["a.csv", "a.tsv", "a.txt", "a.json", "a.vcf", "a.bin"][ext];
        let s = holdfast_shared::classify::classify_bytes(name, &bytes);
        prop_assert!(s.records <= bytes.len() as u64);
    }

    #[test]
    fn split_frames_reassemble(cuts in proptest::collection::vec(1usize..64, 1..20), seqs in proptest::collection::vec(1u64..u64::MAX, 1..5)) {
        let msgs: Vec<Message> = seqs.iter().map(|&s| Message::Ack { through_seq: s }).collect();
        let stream: Vec<u8> = msgs.iter().flat_map(|m| wire::encode(m).unwrap()).collect();
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut at = 0;
        for c in cuts.iter().cycle() {
            if at >= stream.len() { break; }
            let end = (at + c).min(stream.len());
            d.push(&stream[at..end]).unwrap();
            while let Some(m) = d.next_message().unwrap() { out.push(m); }
            at = end;
        }
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn policy_compiler_never_panics(src in "\\PC{0,400}") {
        if let Err(errs) = PolicySet::compile(&[("p.toml", &src)], "/home/u") {
            for e in errs.0 {
                prop_assert!(e.line >= 1 && e.column >= 1);
                prop_assert!(e.line <= src.lines().count().max(1) + 1);
            }
        }
    }

    #[test]
    fn mutated_policies_fail_with_a_location(pos in 0usize..POLICY.len(), junk in "[\\[\\]=\"a-z0-9 \n{}]{1,6}") {
        let mut src = POLICY.to_string();
        let p = (0..=pos).rev().find(|&i| src.is_char_boundary(i)).unwrap_or(0);
        src.insert_str(p, &junk);
        if let Err(errs) = PolicySet::compile(&[("p.toml", &src)], "/home/u") {
            prop_assert!(!errs.0.is_empty());
            let shown = errs.to_string();
            prop_assert!(shown.starts_with("p.toml:"), "{}", shown);
        }
    }
}
