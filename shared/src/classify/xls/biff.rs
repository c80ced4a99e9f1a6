//! BIFF8 records: the record types read here, and a reader that yields one record (type and
//! data) at a time from the `Workbook` stream, with `CONTINUE` records left to the caller.

use std::io::Read;

// BIFF8 record types used here.
pub(super) const BOF: u16 = 0x0809;
pub(super) const EOF: u16 = 0x000A;
pub(super) const FILEPASS: u16 = 0x002F;
pub(super) const BOUNDSHEET: u16 = 0x0085;
pub(super) const SST: u16 = 0x00FC;
pub(super) const CONTINUE: u16 = 0x003C;
pub(super) const LABELSST: u16 = 0x00FD;
pub(super) const LABEL: u16 = 0x0204;
pub(super) const RSTRING: u16 = 0x00D6;
pub(super) const NUMBER: u16 = 0x0203;
pub(super) const RK: u16 = 0x027E;
pub(super) const MULRK: u16 = 0x00BD;
pub(super) const FORMULA: u16 = 0x0006;
pub(super) const STRING: u16 = 0x0207;

/// Reads BIFF records: `u16 type | u16 length | data`, with a reusable buffer.
pub(super) struct Biff<S> {
    pub(super) s: S,
    pub(super) data: Vec<u8>,
    /// Bytes of the stream read so far.
    pub(super) read: u64,
}

impl<S: Read> Biff<S> {
    /// The next record's type (its data in `self.data`), or `None` at the stream's end.
    pub(super) fn next(&mut self) -> std::io::Result<Option<u16>> {
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.s.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Ok(None),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let typ = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        self.data.resize(len, 0);
        self.s.read_exact(&mut self.data)?;
        self.read += 4 + len as u64;
        Ok(Some(typ))
    }
}
