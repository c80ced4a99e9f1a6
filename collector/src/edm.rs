//! Customer-list import for exact data match: reads the company's master list (CSV/TSV in
//! UTF-8, UTF-16 or GBK), validates and normalises the chosen columns, keys each identifier
//! with the deployment secret (`edm.key`, 0600) and signs the fingerprint set for agents.
//! The identifiers themselves are never stored or sent.

use crate::config::Config;
use crate::store::NewCustomerSet;
use crate::store::{Store, StoreError};
use holdfast_shared::classify::record::{header_key, header_role};
use holdfast_shared::classify::{RowSink, TableReader, TextDecoder};
use holdfast_shared::edm::manifest::{held_header, version_of, Manifest};
use holdfast_shared::edm::EdmBuilder;
use holdfast_shared::ident::Context;
use holdfast_shared::signed::SignError;
use holdfast_shared::time::UnixMs;
use holdfast_shared::wire;
use std::io::Read;
use std::path::Path;

/// Skipped rows listed individually; the rest are counted.
const MAX_LISTED: usize = 1000;

/// Why an import failed (bad rows are reported, not fatal).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A requested column is not in the header.
    #[error("--columns: no column `{0}` in the header (found: {1})")]
    Column(String, String),
    /// The file has no header row or no data.
    #[error("{0}: no header row")]
    Empty(String),
    /// No valid identifier at all: nothing to match against.
    #[error("{0}: no valid identifier in the chosen columns; nothing imported")]
    Nothing(String),
    /// The deployment secret could not be read or created.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// Signing or encoding failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The set could not be encoded.
    #[error(transparent)]
    Edm(#[from] holdfast_shared::edm::EdmError),
    /// The set could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    pub version: String,
    pub customers: u64,
    pub identifiers: u64,
    pub skipped_rows: u64,
    pub skipped: Vec<Skipped>,
    /// Rows whose every chosen field was empty or invalid are skipped; a row with at least
    /// one valid identifier is imported (its bad fields are listed too).
    pub columns: Vec<String>,
}

struct ImportSink<'a> {
    wanted: Vec<String>,
    /// Column index → chosen column name.
    chosen: Vec<(usize, String)>,
    /// The country column's index, when the header has one: national phone numbers are
    /// imported in E.164 with their row's country, as agents look them up.
    country: Option<usize>,
    header: Option<Vec<String>>,
    row: Vec<Vec<u8>>,
    line: u64,
    builder: &'a mut EdmBuilder,
    identifiers: u64,
    skipped_rows: u64,
    skipped: Vec<Skipped>,
    error: Option<ImportError>,
    file: String,
}

impl ImportSink<'_> {
    fn skip(&mut self, reason: String) {
        if self.skipped.len() < MAX_LISTED {
            self.skipped.push(Skipped {
                line: self.line,
                reason,
            });
        }
    }

    fn header(&mut self, cells: Vec<String>) {
        let keys: Vec<String> = cells.iter().map(|c| header_key(c)).collect();
        for want in &self.wanted {
            let k = header_key(want);
            let found = keys.iter().position(|h| *h == k).or_else(|| {
                cells
                    .iter()
                    .position(|c| header_role(c).is_some_and(|r| r.as_str() == k))
            });
            match found {
                Some(i) => self.chosen.push((i, want.clone())),
                None => {
                    self.error = Some(ImportError::Column(want.clone(), cells.join(", ")));
                    return;
                }
            }
        }
        self.country = cells
            .iter()
            .position(|c| header_role(c) == Some(holdfast_shared::classify::roles::Role::Country));
        self.header = Some(cells);
    }
}

impl RowSink for ImportSink<'_> {
    fn field(&mut self, text: &[u8]) {
        if self.row.len() < 512 {
            self.row.push(text.trim_ascii().to_vec());
        }
    }

    fn end_record(&mut self) {
        self.line += 1;
        let row = std::mem::take(&mut self.row);
        if self.error.is_some() || row.iter().all(|f| f.is_empty()) {
            return;
        }
        if self.header.is_none() {
            let cells = row
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            self.header(cells);
            return;
        }
        let mut good = 0;
        let mut bad = Vec::new();
        for (i, name) in self.chosen.clone() {
            let value = row.get(i).map(Vec::as_slice).unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            // Read as the agent reads that column (a phone column's extensions and national
            // forms), so the fingerprints are the ones agents look up.
            let ctx = header_role(&name).map_or(Context::Unknown, |r| r.context());
            let country = self
                .country
                .and_then(|c| row.get(c))
                .and_then(|c| holdfast_shared::country::dialling(c));
            match self.builder.add_in_country(ctx, value, country) {
                Some(_) => good += 1,
                None => bad.push(format!("{name}: not an email, phone, ID or card number")),
            }
        }
        self.identifiers += good;
        if good == 0 {
            self.skipped_rows += 1;
            let reason = if bad.is_empty() {
                "no value in the chosen columns".to_string()
            } else {
                bad.join("; ")
            };
            self.skip(reason);
        } else {
            self.builder.customer();
            if !bad.is_empty() {
                self.skip(format!("imported, but {}", bad.join("; ")));
            }
        }
    }
}

/// The deployment secret fingerprints are keyed with (32 random bytes, 0600), created once.
pub fn secret(data_dir: &Path) -> Result<Vec<u8>, crate::pki::PkiError> {
    let path = data_dir.join("edm.key");
    let io = |source| crate::pki::PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        holdfast_io::fs::write_file_atomic(&path, &rand::random::<[u8; 32]>(), 0o600)
            .map_err(io)?;
    }
    std::fs::read(&path).map_err(io)
}

/// Imports `file`, choosing `columns` by header name or role (`email`, `phone`). `progress`
/// is called with (bytes read, total bytes) as the file is read.
pub fn import(
    config: &Config,
    store: &Store,
    file: &Path,
    columns: &[String],
    now_ms: UnixMs,
    actor: &crate::Actor,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Imported, Held), ImportError> {
    let shown = file.display().to_string();
    let io = |source| ImportError::Io {
        path: shown.clone(),
        source,
    };
    let mut f = std::fs::File::open(file).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    let key = secret(&config.data_dir)?;
    let mut builder = EdmBuilder::new(&key);
    let mut sink = ImportSink {
        wanted: columns.to_vec(),
        chosen: Vec::new(),
        country: None,
        header: None,
        row: Vec::new(),
        line: 0,
        builder: &mut builder,
        identifiers: 0,
        skipped_rows: 0,
        skipped: Vec::new(),
        error: None,
        file: shown.clone(),
    };
    let mut decoder = TextDecoder::new();
    let mut table = TableReader::new(None);
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        read += n as u64;
        decoder.feed(&buf[..n], &mut |t| table.feed(t, &mut sink));
        progress(read, total);
        if let Some(e) = sink.error.take() {
            return Err(e);
        }
    }
    decoder.finish(&mut |t| table.feed(t, &mut sink));
    table.finish(&mut sink);
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    if sink.header.is_none() {
        return Err(ImportError::Empty(sink.file));
    }
    let (identifiers, skipped_rows, skipped) = (sink.identifiers, sink.skipped_rows, sink.skipped);
    if identifiers == 0 {
        return Err(ImportError::Nothing(shown));
    }
    let set = builder.finish();
    let payload = set.to_bytes()?;
    let version = version_of(&payload);
    let manifest = Manifest::of(&payload, wire::EDM_CHUNK as u32, set.customers);
    let signed = manifest.sign(
        &crate::pki::signing_key(&config.data_dir)?,
        &version,
        now_ms,
    )?;
    store.publish_edm(
        &NewCustomerSet {
            version: &version,
            customers: set.customers,
            piece: manifest.piece,
            manifest: &signed.to_bytes()?,
            payload: &payload,
        },
        now_ms,
        actor,
    )?;
    Ok((
        Imported {
            version,
            customers: set.customers,
            identifiers,
            skipped_rows,
            skipped,
            columns: columns.to_vec(),
        },
        Held {
            header: held_header(&signed)?,
            payload,
        },
    ))
}

/// A set as an agent keeps it: the signed manifest, then the set (what `edm import --out`
/// writes, and `holdfast-agent scan --edm` reads).
#[derive(Debug)]
pub struct Held {
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Held {
    pub fn to_bytes(&self) -> Vec<u8> {
        [self.header.as_slice(), &self.payload].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_shared::ident::IdKind;

    #[test]
    fn imports_reports_bad_rows_and_publishes_a_signed_set() {
        let (dir, config, store) = crate::store::fixtures::configured();
        let list = dir.path().join("customers.csv");
        let text = "客户名称,邮箱,手机\n甲公司,a@example.cn,138 0013 8000\n乙公司,,not a phone\n丙公司,c@example.cn,\n,,\n丁公司,d@@bad,13912345678\n";
        std::fs::write(&list, encoding_rs::GBK.encode(text).0).unwrap();
        let mut calls = 0;
        let (r, held) = import(
            &config,
            &store,
            &list,
            &["邮箱".into(), "phone".into()],
            UnixMs(5),
            &crate::Actor::test(),
            &mut |_, _| calls += 1,
        )
        .unwrap();
        assert!(calls > 0);
        assert_eq!((r.customers, r.identifiers, r.skipped_rows), (3, 4, 1));
        assert_eq!(
            r.skipped,
            vec![
                Skipped {
                    line: 3,
                    reason: "phone: not an email, phone, ID or card number".into()
                },
                Skipped {
                    line: 6,
                    reason: "imported, but 邮箱: not an email, phone, ID or card number".into()
                },
            ]
        );
        // Stored as the current set, with a manifest signed under the collector's key that
        // names every piece; the held file reads back through it.
        let info = store.current_edm_info().unwrap().unwrap();
        assert_eq!(
            (info.version.as_str(), info.customers),
            (r.version.as_str(), 3)
        );
        assert_eq!(info.size, held.payload.len() as u64);
        let pk = holdfast_shared::signed::public_key(&crate::pki::signing_key(dir.path()).unwrap())
            .unwrap();
        let signed = holdfast_shared::signed::Signed::from_bytes(&info.manifest).unwrap();
        let offered = Manifest::open(&signed, &pk).unwrap();
        assert_eq!(
            (offered.version, offered.issued_ms),
            (r.version.clone(), UnixMs(5))
        );
        let (total, first) = store.edm_chunk(&r.version, 0, 1 << 20).unwrap().unwrap();
        assert_eq!(total, info.size);
        assert!(offered.manifest.matches(0, &first));
        let file = held.to_bytes();
        let mut r2 = &file[..];
        let (head, _) = holdfast_shared::edm::manifest::read_held_header(&mut r2).unwrap();
        assert_eq!(head, signed);
        let set = holdfast_shared::edm::EdmSet::from_reader(
            &mut holdfast_shared::edm::manifest::Pieces::new(r2, &offered.manifest),
        )
        .unwrap();
        let m = set.matcher();
        assert!(m.matches(IdKind::Phone, b"+8613800138000"));
        assert!(m.matches(IdKind::Email, b"C@example.cn"));
        assert!(!m.matches(IdKind::Email, b"b@example.cn"));
        // A missing column is named with what the header has.
        let err = import(
            &config,
            &store,
            &list,
            &["wechat".into()],
            UnixMs(6),
            &crate::Actor::test(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--columns: no column `wechat` in the header (found: 客户名称, 邮箱, 手机)"
        );
    }
}
