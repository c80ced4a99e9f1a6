//! Text decoding: turns a byte stream in UTF-8 (with or without a BOM), UTF-16 (LE or BE,
//! with a BOM or sniffed from its zero bytes) or GB18030/GBK (what Chinese Excel writes as
//! "CSV") into UTF-8, streaming, with fixed-size buffers.

/// Bytes looked at before the encoding is decided.
const SNIFF: usize = 16 * 1024;
/// Output buffer for transcoding.
const OUT: usize = 64 * 1024;

/// The encodings told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Gb18030,
}

impl Encoding {
    /// The name shown in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
            Encoding::Gb18030 => "gb18030",
        }
    }
}

enum State {
    Sniffing(Vec<u8>),
    Utf8,
    Transcode(Box<encoding_rs::Decoder>),
}

/// Streaming decoder to UTF-8.
pub struct TextDecoder {
    state: State,
    encoding: Option<Encoding>,
    out: Vec<u8>,
}

impl std::fmt::Debug for TextDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextDecoder")
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl Default for TextDecoder {
    fn default() -> Self {
        TextDecoder::new()
    }
}

/// Decides the encoding from the first bytes (`last`: the input ends here).
pub fn sniff(head: &[u8], last: bool) -> (Encoding, usize) {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return (Encoding::Utf8, 3);
    }
    if head.starts_with(&[0xFF, 0xFE]) {
        return (Encoding::Utf16Le, 2);
    }
    if head.starts_with(&[0xFE, 0xFF]) {
        return (Encoding::Utf16Be, 2);
    }
    if let Some(e) = utf16_without_bom(head) {
        return (e, 0);
    }
    match std::str::from_utf8(head) {
        Ok(_) => (Encoding::Utf8, 0),
        // Cut in the middle of a character at the end of the sample: still UTF-8.
        Err(e) if e.error_len().is_none() && !last => (Encoding::Utf8, 0),
        Err(_) => {
            let (_, malformed) = encoding_rs::GB18030
                .decode_without_bom_handling_and_without_replacement(head)
                .map(|_| ((), false))
                .unwrap_or(((), true));
            if malformed && !last {
                // A GB18030 sample can also be cut mid-character: retry without the tail.
                let cut = &head[..head.len().saturating_sub(3)];
                if encoding_rs::GB18030
                    .decode_without_bom_handling_and_without_replacement(cut)
                    .is_some()
                {
                    return (Encoding::Gb18030, 0);
                }
            }
            if malformed {
                (Encoding::Utf8, 0)
            } else {
                (Encoding::Gb18030, 0)
            }
        }
    }
}

/// UTF-16 without a BOM: text in the Latin range has a zero in every other byte.
fn utf16_without_bom(head: &[u8]) -> Option<Encoding> {
    let pairs = head.len() / 2;
    if pairs < 8 {
        return None;
    }
    let (mut even, mut odd) = (0usize, 0usize);
    for p in head.chunks_exact(2) {
        even += usize::from(p[0] == 0);
        odd += usize::from(p[1] == 0);
    }
    if odd * 10 > pairs * 3 && even * 20 < pairs {
        Some(Encoding::Utf16Le)
    } else if even * 10 > pairs * 3 && odd * 20 < pairs {
        Some(Encoding::Utf16Be)
    } else {
        None
    }
}

impl TextDecoder {
    pub fn new() -> TextDecoder {
        TextDecoder {
            state: State::Sniffing(Vec::new()),
            encoding: None,
            out: Vec::new(),
        }
    }

    /// The encoding decided on, once enough bytes were seen.
    pub fn encoding(&self) -> Option<Encoding> {
        self.encoding
    }

    /// A decoder for the same text from a line start on: UTF-8 passes through as it is, so a
    /// reader can take over mid-file; `None` for the other encodings (and before deciding).
    pub fn from_line_start(&self) -> Option<TextDecoder> {
        matches!(self.state, State::Utf8).then(|| TextDecoder {
            state: State::Utf8,
            encoding: Some(Encoding::Utf8),
            out: Vec::new(),
        })
    }

    /// Feeds bytes; UTF-8 comes out through `sink`, in pieces of any size.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn FnMut(&[u8])) {
        if let State::Sniffing(buf) = &mut self.state {
            buf.extend_from_slice(chunk);
            if buf.len() < SNIFF {
                return;
            }
            let head = std::mem::take(buf);
            self.decide(&head, false, sink);
            return;
        }
        self.pass(chunk, false, sink);
    }

    /// Flushes what is buffered.
    pub fn finish(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if let State::Sniffing(buf) = &mut self.state {
            let head = std::mem::take(buf);
            self.decide(&head, true, sink);
        } else {
            self.pass(&[], true, sink);
        }
    }

    fn decide(&mut self, head: &[u8], last: bool, sink: &mut dyn FnMut(&[u8])) {
        let (enc, bom) = sniff(head, last);
        self.encoding = Some(enc);
        self.state = match enc {
            Encoding::Utf8 => State::Utf8,
            Encoding::Utf16Le => State::Transcode(Box::new(
                encoding_rs::UTF_16LE.new_decoder_without_bom_handling(),
            )),
            Encoding::Utf16Be => State::Transcode(Box::new(
                encoding_rs::UTF_16BE.new_decoder_without_bom_handling(),
            )),
            Encoding::Gb18030 => State::Transcode(Box::new(
                encoding_rs::GB18030.new_decoder_without_bom_handling(),
            )),
        };
        self.pass(&head[bom..], last, sink);
    }

    fn pass(&mut self, mut src: &[u8], last: bool, sink: &mut dyn FnMut(&[u8])) {
        match &mut self.state {
            State::Sniffing(_) => {}
            State::Utf8 => {
                if !src.is_empty() {
                    sink(src);
                }
            }
            State::Transcode(dec) => {
                if self.out.len() != OUT {
                    self.out.resize(OUT, 0);
                }
                loop {
                    let (result, read, written, _) = dec.decode_to_utf8(src, &mut self.out, last);
                    if written > 0 {
                        sink(&self.out[..written]);
                    }
                    src = &src[read..];
                    if matches!(result, encoding_rs::CoderResult::InputEmpty) {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: decode `bytes` fed in pieces of `step`, compare text and
    /// the encoding decided.
    fn check(bytes: &[u8], step: usize, want: &str, enc: Encoding) {
        let mut d = TextDecoder::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            d.feed(piece, &mut |b| out.extend_from_slice(b));
        }
        d.finish(&mut |b| out.extend_from_slice(b));
        assert_eq!(String::from_utf8_lossy(&out), want);
        assert_eq!(d.encoding(), Some(enc));
    }

    #[test]
    fn decodes_what_exports_are_written_in() {
        let text = "客户名称,联系人,手机\n深圳市某某科技有限公司,张伟,13800138000\n";
        check(text.as_bytes(), 7, text, Encoding::Utf8);
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(text.as_bytes());
        check(&bom, 5, text, Encoding::Utf8);
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        check(&gbk, 3, text, Encoding::Gb18030);
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        check(&le, 11, text, Encoding::Utf16Le);
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        check(&be, 4096, text, Encoding::Utf16Be);
        let ascii = "Name,Email\nAda,ada@example.com\n";
        let le_nobom: Vec<u8> = ascii.encode_utf16().flat_map(u16::to_le_bytes).collect();
        check(&le_nobom, 9, ascii, Encoding::Utf16Le);
        // A long GBK file is decided from its first 16 KiB, cut anywhere.
        let long: String = text.repeat(2000);
        let (gbk, _, _) = encoding_rs::GBK.encode(&long);
        check(&gbk, 1000, &long, Encoding::Gb18030);
        check(b"", 1, "", Encoding::Utf8);
    }
}
