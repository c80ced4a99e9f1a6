//! The OLE compound file an `.xls` lives in, read sector by sector through its allocation
//! table (one table sector in memory at a time), and its streams as `Read`: every chain walk
//! is bounded by the file's sector count, so a looping or truncated file is an error.

use super::{u16_at, u32_at, XlsError};
use std::io::{Read, Seek, SeekFrom};

pub(super) const SIGNATURE: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
pub(super) const END_OF_CHAIN: u32 = 0xFFFF_FFFE;
/// Streams shorter than this live in the mini stream (64-byte sectors).
pub(super) const MINI_CUTOFF: u64 = 4096;
/// Directory entries read at most (a workbook has a handful).
pub(super) const MAX_DIR_ENTRIES: usize = 65_536;

/// An OLE compound file opened for reading streams.
pub(super) struct Compound<R> {
    pub(super) r: R,
    pub(super) sector_size: usize,
    /// Sectors the file can hold: every chain is shorter than this.
    pub(super) sectors: u64,
    /// Where the allocation table's sectors are (from the header and the DIFAT chain).
    pub(super) fat_sectors: Vec<u32>,
    /// The one cached sector of the allocation table: (index in `fat_sectors`, entries).
    pub(super) fat_cache: Option<(usize, Vec<u32>)>,
    pub(super) mini_cutoff: u64,
    pub(super) first_mini_fat: u32,
    pub(super) first_dir: u32,
}

/// A directory entry's stream: where it starts and how long it is.
#[derive(Clone, Copy)]
pub(super) struct StreamRef {
    pub(super) start: u32,
    pub(super) size: u64,
}

impl<R: Read + Seek> Compound<R> {
    pub(super) fn open(mut r: R) -> Result<Compound<R>, XlsError> {
        let len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        let mut h = [0u8; 512];
        r.read_exact(&mut h)
            .map_err(|_| XlsError::Damaged("shorter than its header"))?;
        if h[..8] != SIGNATURE {
            return Err(XlsError::Damaged("no compound-file signature"));
        }
        let shift = u16_at(&h, 0x1E).unwrap_or(0);
        let sector_size = match shift {
            9 => 512usize,
            12 => 4096,
            _ => return Err(XlsError::Damaged("unsupported sector size")),
        };
        let sectors = len
            .saturating_sub(sector_size as u64)
            .div_ceil(sector_size as u64);
        let num_fat = u64::from(u32_at(&h, 0x2C).unwrap_or(0));
        if num_fat > sectors {
            return Err(XlsError::Damaged("allocation table larger than the file"));
        }
        let mut fat_sectors: Vec<u32> = (0..109)
            .filter_map(|i| u32_at(&h, 0x4C + 4 * i))
            .take(num_fat as usize)
            .collect();
        let mut c = Compound {
            r,
            sector_size,
            sectors,
            fat_sectors: Vec::new(),
            fat_cache: None,
            // Fixed by the format; a header claiming more is not trusted with an allocation.
            mini_cutoff: MINI_CUTOFF,
            first_mini_fat: u32_at(&h, 0x3C).unwrap_or(END_OF_CHAIN),
            first_dir: u32_at(&h, 0x30).unwrap_or(END_OF_CHAIN),
        };
        // Large files list further table sectors in a chain of DIFAT sectors.
        let mut difat = u32_at(&h, 0x44).unwrap_or(END_OF_CHAIN);
        let per = sector_size / 4 - 1;
        let mut buf = vec![0u8; sector_size];
        let mut steps = 0u64;
        while (fat_sectors.len() as u64) < num_fat && difat < END_OF_CHAIN - 2 {
            steps += 1;
            if steps > sectors {
                return Err(XlsError::Damaged("looping DIFAT chain"));
            }
            c.read_sector(difat, &mut buf)?;
            let room = (num_fat as usize).saturating_sub(fat_sectors.len());
            fat_sectors.extend((0..per).filter_map(|i| u32_at(&buf, 4 * i)).take(room));
            difat = u32_at(&buf, 4 * per).unwrap_or(END_OF_CHAIN);
        }
        c.fat_sectors = fat_sectors;
        Ok(c)
    }

    pub(super) fn read_sector(&mut self, sector: u32, buf: &mut [u8]) -> Result<(), XlsError> {
        if u64::from(sector) >= self.sectors {
            return Err(XlsError::Damaged("sector beyond the end of the file"));
        }
        let at = (u64::from(sector) + 1) * self.sector_size as u64;
        self.r.seek(SeekFrom::Start(at))?;
        // The last sector may be cut short by the writer: the rest reads as zeros.
        let mut filled = 0;
        while filled < buf.len() {
            match self.r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf[filled..].fill(0);
        Ok(())
    }

    /// The sector after `sector` in its chain.
    pub(super) fn next(&mut self, sector: u32) -> Result<u32, XlsError> {
        let per = self.sector_size / 4;
        let idx = sector as usize / per;
        if self.fat_cache.as_ref().map(|(i, _)| *i) != Some(idx) {
            let at = *self
                .fat_sectors
                .get(idx)
                .ok_or(XlsError::Damaged("sector outside the allocation table"))?;
            let mut buf = vec![0u8; self.sector_size];
            self.read_sector(at, &mut buf)?;
            let entries = (0..per).filter_map(|i| u32_at(&buf, 4 * i)).collect();
            self.fat_cache = Some((idx, entries));
        }
        let entries = self.fat_cache.as_ref().map(|(_, e)| e);
        entries
            .and_then(|e| e.get(sector as usize % per).copied())
            .ok_or(XlsError::Damaged("sector outside the allocation table"))
    }

    /// Reads a whole chain of regular sectors, up to `max` bytes (directory, mini table).
    pub(super) fn read_chain(&mut self, start: u32, max: usize) -> Result<Vec<u8>, XlsError> {
        let mut out = Vec::new();
        let mut s = start;
        let mut buf = vec![0u8; self.sector_size];
        let mut steps = 0u64;
        while s < END_OF_CHAIN - 2 && out.len() < max {
            steps += 1;
            if steps > self.sectors {
                return Err(XlsError::Damaged("looping sector chain"));
            }
            self.read_sector(s, &mut buf)?;
            out.extend_from_slice(&buf);
            s = self.next(s)?;
        }
        Ok(out)
    }

    /// Finds the named stream (case-insensitive) in the directory, and the root entry's
    /// stream (the container of small streams).
    pub(super) fn find(
        &mut self,
        names: &[&str],
    ) -> Result<(Option<(usize, StreamRef)>, StreamRef), XlsError> {
        let dir = self.read_chain(self.first_dir, MAX_DIR_ENTRIES * 128)?;
        let mut root = StreamRef {
            start: END_OF_CHAIN,
            size: 0,
        };
        let mut found = None;
        for e in dir.chunks_exact(128) {
            let kind = e[0x42];
            let name_len = usize::from(u16_at(e, 0x40).unwrap_or(0)).min(64);
            let units: Vec<u16> = (0..name_len.saturating_sub(2) / 2)
                .filter_map(|i| u16_at(e, 2 * i))
                .collect();
            let name = String::from_utf16_lossy(&units);
            let sref = StreamRef {
                start: u32_at(e, 0x74).unwrap_or(END_OF_CHAIN),
                // Version 3 files leave the high half undefined.
                size: if self.sector_size == 512 {
                    u64::from(u32_at(e, 0x78).unwrap_or(0))
                } else {
                    u32_at(e, 0x78).map_or(0, u64::from)
                        | u64::from(u32_at(e, 0x7C).unwrap_or(0)) << 32
                },
            };
            match kind {
                5 => root = sref,
                2 => {
                    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&name)) {
                        if found.is_none_or(|(j, _)| i < j) {
                            found = Some((i, sref));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok((found, root))
    }

    /// A reader over a stream: regular sectors streamed, a small stream read from the mini
    /// stream (it is under the cutoff, 4 KiB, so holding it is bounded).
    pub(super) fn stream(mut self, s: StreamRef, root: StreamRef) -> Result<Stream<R>, XlsError> {
        if s.size < self.mini_cutoff {
            let data = self.read_mini(s, root)?;
            return Ok(Stream::Small(std::io::Cursor::new(data)));
        }
        Ok(Stream::Sectors {
            buf: vec![0u8; self.sector_size],
            pos: self.sector_size,
            next: s.start,
            left: s.size,
            steps: 0,
            file: self,
        })
    }

    pub(super) fn read_mini(&mut self, s: StreamRef, root: StreamRef) -> Result<Vec<u8>, XlsError> {
        const MINI: usize = 64;
        let size = usize::try_from(s.size.min(self.mini_cutoff)).unwrap_or(0);
        let per_sector = self.sector_size / 4;
        let mut out = Vec::with_capacity(size);
        let mut m = s.start;
        let mut steps = 0;
        while out.len() < size && m < END_OF_CHAIN - 2 {
            steps += 1;
            if steps > size / MINI + 1 {
                return Err(XlsError::Damaged("looping mini-sector chain"));
            }
            // Where mini sector m sits: offset m*64 in the root's stream.
            let offset = m as usize * MINI;
            let hop = offset / self.sector_size;
            if hop as u64 >= self.sectors || m as usize / per_sector >= self.sectors as usize {
                return Err(XlsError::Damaged("mini sector beyond the end of the file"));
            }
            let mut sector = root.start;
            for _ in 0..hop {
                sector = self.next(sector)?;
            }
            let mut buf = vec![0u8; self.sector_size];
            self.read_sector(sector, &mut buf)?;
            let at = offset % self.sector_size;
            let take = MINI.min(size - out.len());
            out.extend_from_slice(&buf[at..at + take]);
            // The mini table: entry m of the chain starting at first_mini_fat.
            let mut table_sector = self.first_mini_fat;
            for _ in 0..(m as usize / per_sector) {
                table_sector = self.next(table_sector)?;
            }
            self.read_sector(table_sector, &mut buf)?;
            m = u32_at(&buf, 4 * (m as usize % per_sector)).unwrap_or(END_OF_CHAIN);
        }
        Ok(out)
    }
}

pub(super) enum Stream<R> {
    Small(std::io::Cursor<Vec<u8>>),
    Sectors {
        file: Compound<R>,
        buf: Vec<u8>,
        pos: usize,
        next: u32,
        left: u64,
        steps: u64,
    },
}

impl<R: Read + Seek> Read for Stream<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Small(c) => c.read(out),
            Stream::Sectors {
                file,
                buf,
                pos,
                next,
                left,
                steps,
            } => {
                if *left == 0 {
                    return Ok(0);
                }
                if *pos == buf.len() {
                    *steps += 1;
                    if *next >= END_OF_CHAIN - 2 || *steps > file.sectors {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "stream chain ends early or loops",
                        ));
                    }
                    let s = *next;
                    file.read_sector(s, buf).map_err(to_io)?;
                    *next = file.next(s).map_err(to_io)?;
                    *pos = 0;
                }
                let n = out.len().min(buf.len() - *pos).min(*left as usize);
                out[..n].copy_from_slice(&buf[*pos..*pos + n]);
                *pos += n;
                *left -= n as u64;
                Ok(n)
            }
        }
    }
}

pub(super) fn to_io(e: XlsError) -> std::io::Error {
    match e {
        XlsError::Io(e) => e,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
    }
}
