//! How a customer set travels and is kept: a signed manifest of its pieces' SHA-256 (the
//! only signed part, so a set of any size is one small signature), the file an agent holds
//! (the manifest, then the set), and a reader that lets through only pieces that match.
//!
//! A piece is checked before a byte of it is used, so a download resumes from the last good
//! piece and a set on disk is verified as it is read, without being held twice in memory.

use crate::signed::{kind, SignError, Signed, SignedBody, VerifyError, MAX_SIGNED};
use crate::time::UnixMs;
use crate::wire::{EDM_CHUNK, MAX_EDM};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;

/// Smallest piece a manifest may use.
pub const MIN_PIECE: u32 = 4096;
/// The first bytes of the file an agent keeps its set in.
pub const HELD_MAGIC: &[u8; 8] = b"HFEDMHLD";

/// What the collector signs for a set: its size, how it is cut, and each piece's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The set's stored form ([`super::EdmSet::to_bytes`]), in bytes.
    pub size: u64,
    /// Bytes per piece (the last may be shorter).
    pub piece: u32,
    /// Customers the set was built from.
    pub customers: u64,
    /// SHA-256 of each piece, in order, 32 bytes each.
    #[serde(with = "serde_bytes")]
    pub hashes: Vec<u8>,
}

/// A manifest that verified under the pinned key, with what its envelope said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub version: String,
    pub issued_ms: UnixMs,
    pub manifest: Manifest,
    /// The envelope as received, kept at the head of the held file.
    pub signed: Signed,
}

/// Why a manifest, a piece or a held file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The envelope does not verify or is not a manifest.
    #[error("customer set manifest refused: {0}")]
    Verify(#[from] VerifyError),
    /// It verified but does not describe a set this agent can take.
    #[error("customer set manifest refused: {0}")]
    Malformed(String),
    /// A piece's bytes are not the ones the manifest names.
    #[error("piece {index} of {pieces} of the customer set does not match its signed hash")]
    Piece { index: u64, pieces: u64 },
    /// The held file is not one (or is cut off).
    #[error("held customer set: {0}")]
    Held(String),
}

/// The version a set's stored form is published under: the start of its SHA-256.
pub fn version_of(payload: &[u8]) -> String {
    crate::sha256_hex(payload)[..16].to_string()
}

impl Manifest {
    /// The manifest of `payload` cut into pieces of `piece` bytes.
    pub fn of(payload: &[u8], piece: u32, customers: u64) -> Manifest {
        let piece = piece.clamp(MIN_PIECE, EDM_CHUNK as u32);
        let hashes = payload
            .chunks(piece as usize)
            .flat_map(|c| <[u8; 32]>::from(Sha256::digest(c)))
            .collect();
        Manifest {
            size: payload.len() as u64,
            piece,
            customers,
            hashes,
        }
    }

    /// How many pieces the set has.
    pub fn pieces(&self) -> u64 {
        self.size.div_ceil(u64::from(self.piece.max(1)))
    }

    /// Where piece `index` starts and how long it is.
    pub fn range(&self, index: u64) -> Option<(u64, usize)> {
        let start = index.checked_mul(u64::from(self.piece))?;
        (start < self.size).then(|| {
            (
                start,
                (self.size - start).min(u64::from(self.piece)) as usize,
            )
        })
    }

    /// Whether `bytes` are piece `index`.
    pub fn matches(&self, index: u64, bytes: &[u8]) -> bool {
        let at = index as usize * 32;
        self.range(index).is_some_and(|(_, len)| len == bytes.len())
            && self
                .hashes
                .get(at..at + 32)
                .is_some_and(|h| h == Sha256::digest(bytes).as_slice())
    }

    fn check(&self) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError::Malformed(m));
        if self.size == 0 || self.size > MAX_EDM {
            return bad(format!(
                "a set of {} bytes is outside 1..={MAX_EDM}",
                self.size
            ));
        }
        if !(MIN_PIECE..=EDM_CHUNK as u32).contains(&self.piece) {
            return bad(format!(
                "pieces of {} bytes are outside {MIN_PIECE}..={EDM_CHUNK}",
                self.piece
            ));
        }
        if self.hashes.len() as u64 != self.pieces() * 32 {
            return bad(format!(
                "{} bytes of hashes for {} pieces",
                self.hashes.len(),
                self.pieces()
            ));
        }
        Ok(())
    }

    /// Signs the manifest of the set published as `version`.
    pub fn sign(
        &self,
        pkcs8: &[u8],
        version: &str,
        issued_ms: UnixMs,
    ) -> Result<Signed, SignError> {
        Signed::sign(
            pkcs8,
            &SignedBody {
                kind: kind::EDM_MANIFEST.into(),
                version: version.into(),
                issued_ms,
                payload: rmp_serde::to_vec_named(self)
                    .map_err(|e| SignError::Encode(e.to_string()))?,
            },
        )
    }

    /// Verifies `signed` under `public_key`, then decodes and checks the manifest.
    pub fn open(signed: &Signed, public_key: &[u8]) -> Result<Offered, ManifestError> {
        Offered::from_body(signed.verify(public_key, kind::EDM_MANIFEST)?, signed)
    }
}

impl Offered {
    /// Decodes a manifest without checking its signature: only for offline tools reading a
    /// held file the operator gave them (`holdfast-agent scan --edm`). The pieces are still
    /// checked against it; what an agent receives goes through [`Manifest::open`].
    pub fn decode_unverified(signed: &Signed) -> Result<Offered, ManifestError> {
        let body = signed.decode_unverified()?;
        if body.kind != kind::EDM_MANIFEST {
            return Err(VerifyError::WrongKind {
                expected: kind::EDM_MANIFEST.into(),
                got: body.kind,
            }
            .into());
        }
        Offered::from_body(body, signed)
    }

    fn from_body(body: SignedBody, signed: &Signed) -> Result<Offered, ManifestError> {
        let manifest: Manifest = rmp_serde::from_slice(&body.payload)
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        manifest.check()?;
        Ok(Offered {
            version: body.version,
            issued_ms: body.issued_ms,
            manifest,
            signed: signed.clone(),
        })
    }
}

/// The start of a held file: [`HELD_MAGIC`], the length of the signed manifest (`u32`,
/// big-endian) and the signed manifest. The set follows.
pub fn held_header(signed: &Signed) -> Result<Vec<u8>, SignError> {
    let envelope = signed.to_bytes()?;
    let mut out = Vec::with_capacity(HELD_MAGIC.len() + 4 + envelope.len());
    out.extend_from_slice(HELD_MAGIC);
    out.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
    out.extend_from_slice(&envelope);
    Ok(out)
}

/// Reads a held file's header: the signed manifest (not yet verified) and the header's length.
pub fn read_held_header(r: &mut impl Read) -> Result<(Signed, u64), ManifestError> {
    let held = |m: &str| ManifestError::Held(m.to_string());
    let mut head = [0u8; HELD_MAGIC.len() + 4];
    r.read_exact(&mut head)
        .map_err(|_| held("cut off in its header"))?;
    if head[..HELD_MAGIC.len()] != *HELD_MAGIC {
        return Err(held("not a held customer set"));
    }
    let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    if len > MAX_SIGNED + 1024 {
        return Err(held("its manifest is too large"));
    }
    let mut envelope = vec![0u8; len];
    r.read_exact(&mut envelope)
        .map_err(|_| held("cut off in its manifest"))?;
    let signed = Signed::from_bytes(&envelope).map_err(|e| ManifestError::Held(e.to_string()))?;
    Ok((signed, (head.len() + len) as u64))
}

/// The set's bytes read from `inner`, a piece at a time, each checked against the manifest
/// before any of it is handed on. A piece that does not match, a set cut short, or bytes after
/// the last piece are an `InvalidData` error naming what went wrong.
pub struct Pieces<'m, R> {
    inner: R,
    manifest: &'m Manifest,
    next: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<'m, R: Read> Pieces<'m, R> {
    pub fn new(inner: R, manifest: &'m Manifest) -> Pieces<'m, R> {
        Pieces {
            inner,
            manifest,
            next: 0,
            buf: Vec::new(),
            at: 0,
        }
    }

    fn refill(&mut self) -> std::io::Result<bool> {
        let invalid = |e: ManifestError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let Some((_, len)) = self.manifest.range(self.next) else {
            let mut extra = [0u8; 1];
            return match self.inner.read(&mut extra)? {
                0 => Ok(false),
                _ => Err(invalid(ManifestError::Held(
                    "bytes after the last piece".into(),
                ))),
            };
        };
        self.buf.resize(len, 0);
        self.inner
            .read_exact(&mut self.buf)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => invalid(ManifestError::Held(format!(
                    "cut off in piece {} of {}",
                    self.next,
                    self.manifest.pieces()
                ))),
                _ => e,
            })?;
        if !self.manifest.matches(self.next, &self.buf) {
            return Err(invalid(ManifestError::Piece {
                index: self.next,
                pieces: self.manifest.pieces(),
            }));
        }
        self.next += 1;
        self.at = 0;
        Ok(true)
    }
}

impl<R: Read> Read for Pieces<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() && !self.refill()? {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// How many leading pieces `r` (the set's bytes so far) holds intact: where a download
/// resumes.
pub fn verified_prefix(r: &mut impl Read, manifest: &Manifest) -> u64 {
    let mut buf = Vec::new();
    let mut good = 0;
    while let Some((_, len)) = manifest.range(good) {
        buf.resize(len, 0);
        if r.read_exact(&mut buf).is_err() || !manifest.matches(good, &buf) {
            break;
        }
        good += 1;
    }
    good
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (Vec<u8>, Vec<u8>) {
        let sk = crate::signed::test_key();
        let pk = crate::signed::public_key(&sk).unwrap();
        (sk, pk)
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Reads `bytes` through the verifier: the set's bytes or the error's text.
    fn check(manifest: &Manifest, bytes: &[u8], expected: Result<&[u8], &str>) {
        let mut out = Vec::new();
        let got = Pieces::new(bytes, manifest).read_to_end(&mut out);
        match expected {
            Ok(want) => {
                assert!(got.is_ok(), "{got:?}");
                assert_eq!(out, want);
            }
            Err(text) => assert_eq!(got.unwrap_err().to_string(), text),
        }
    }

    #[test]
    fn pieces_pass_only_when_each_matches_its_signed_hash() {
        let set = payload(10_000);
        let m = Manifest::of(&set, MIN_PIECE, 3);
        assert_eq!((m.pieces(), m.hashes.len()), (3, 96));
        assert_eq!(m.range(2), Some((8192, 1808)));
        assert_eq!(m.range(3), None);
        check(&m, &set, Ok(&set));
        let mut bad = set.clone();
        bad[5000] ^= 1;
        check(
            &m,
            &bad,
            Err("piece 1 of 3 of the customer set does not match its signed hash"),
        );
        check(
            &m,
            &set[..9000],
            Err("held customer set: cut off in piece 2 of 3"),
        );
        let mut long = set.clone();
        long.push(0);
        check(
            &m,
            &long,
            Err("held customer set: bytes after the last piece"),
        );
        // Where a download resumes: the intact leading pieces.
        assert_eq!(verified_prefix(&mut &set[..], &m), 3);
        assert_eq!(verified_prefix(&mut &bad[..], &m), 1);
        assert_eq!(verified_prefix(&mut &set[..8191], &m), 1);
        assert_eq!(verified_prefix(&mut &[][..], &m), 0);
    }

    #[test]
    fn a_manifest_opens_only_under_its_key_and_when_consistent() {
        let (sk, pk) = key();
        let set = payload(5000);
        let m = Manifest::of(&set, 4096, 9);
        let signed = m.sign(&sk, &version_of(&set), UnixMs(7)).unwrap();
        let o = Manifest::open(&signed, &pk).unwrap();
        assert_eq!(
            (o.version.as_str(), o.issued_ms),
            (version_of(&set).as_str(), UnixMs(7))
        );
        assert_eq!(o.manifest, m);
        let (_, other) = key();
        assert_eq!(
            Manifest::open(&signed, &other).unwrap_err().to_string(),
            "customer set manifest refused: signature does not verify"
        );
        // A set envelope is not a manifest.
        let wrong = Signed::sign(
            &sk,
            &SignedBody {
                kind: kind::POLICY.into(),
                version: "v".into(),
                issued_ms: UnixMs(1),
                payload: vec![],
            },
        )
        .unwrap();
        assert!(matches!(
            Manifest::open(&wrong, &pk),
            Err(ManifestError::Verify(VerifyError::WrongKind { .. }))
        ));
        for (broken, why) in [
            (
                Manifest {
                    hashes: vec![0; 32],
                    ..m.clone()
                },
                "customer set manifest refused: 32 bytes of hashes for 2 pieces",
            ),
            (
                Manifest {
                    piece: 100,
                    ..m.clone()
                },
                "customer set manifest refused: pieces of 100 bytes are outside 4096..=2097152",
            ),
            (
                Manifest {
                    size: MAX_EDM + 1,
                    ..m.clone()
                },
                "customer set manifest refused: a set of 268435457 bytes is outside 1..=268435456",
            ),
        ] {
            let s = broken.sign(&sk, "v", UnixMs(1)).unwrap();
            assert_eq!(Manifest::open(&s, &pk).unwrap_err().to_string(), why);
        }
    }

    #[test]
    fn a_held_file_is_its_signed_manifest_then_the_set() {
        let (sk, pk) = key();
        let set = payload(9000);
        let signed = Manifest::of(&set, 4096, 1)
            .sign(&sk, "v1", UnixMs(3))
            .unwrap();
        let mut file = held_header(&signed).unwrap();
        let header_len = file.len() as u64;
        file.extend_from_slice(&set);
        let mut r = &file[..];
        let (read, len) = read_held_header(&mut r).unwrap();
        assert_eq!((read.clone(), len), (signed, header_len));
        let o = Manifest::open(&read, &pk).unwrap();
        check(&o.manifest, r, Ok(&set));
        assert_eq!(Offered::decode_unverified(&read).unwrap(), o);
        for (bytes, why) in [
            (
                &b"HFEDMSET\0\0\0\0"[..],
                "held customer set: not a held customer set",
            ),
            (&file[..5], "held customer set: cut off in its header"),
            (&file[..20], "held customer set: cut off in its manifest"),
        ] {
            let err = read_held_header(&mut &bytes[..]).unwrap_err();
            assert_eq!(err.to_string(), why);
        }
    }
}
