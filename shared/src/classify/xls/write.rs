//! Writes `.xls` workbooks (a compound file holding a BIFF8 `Workbook` stream) for tests
//! and the seeded corpus: shared and inline strings, numbers, several sheets.

/// A cell to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A shared string (LABELSST).
    Text(String),
    /// An inline string (LABEL), as old writers produce.
    Inline(String),
    /// A number (NUMBER, or RK when it is a small integer).
    Number(f64),
    /// Nothing.
    Empty,
}

fn record(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
    out.extend_from_slice(&typ.to_le_bytes());
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(data);
}

/// The SST record and its CONTINUE records; strings are split at the 8,224-byte limit.
fn sst(out: &mut Vec<u8>, strings: &[String]) {
    const LIMIT: usize = 8224;
    let mut pieces: Vec<Vec<u8>> = vec![Vec::new()];
    let n = strings.len() as u32;
    pieces[0].extend_from_slice(&n.to_le_bytes());
    pieces[0].extend_from_slice(&n.to_le_bytes());
    for s in strings {
        let units: Vec<u16> = s.encode_utf16().collect();
        let wide = units.iter().any(|&u| u > 0xFF);
        // The header stays in one piece.
        if pieces.last().map_or(0, Vec::len) + 3 > LIMIT {
            pieces.push(Vec::new());
        }
        if let Some(p) = pieces.last_mut() {
            p.extend_from_slice(&(units.len() as u16).to_le_bytes());
            p.push(u8::from(wide));
        }
        let width = if wide { 2 } else { 1 };
        let mut i = 0;
        while i < units.len() {
            let room = LIMIT - pieces.last().map_or(0, Vec::len);
            if room < width {
                pieces.push(vec![u8::from(wide)]);
                continue;
            }
            let take = (room / width).min(units.len() - i);
            if let Some(p) = pieces.last_mut() {
                for &u in &units[i..i + take] {
                    if wide {
                        p.extend_from_slice(&u.to_le_bytes());
                    } else {
                        p.push(u as u8);
                    }
                }
            }
            i += take;
        }
    }
    for (k, p) in pieces.iter().enumerate() {
        record(out, if k == 0 { 0x00FC } else { 0x003C }, p);
    }
}

fn bof(out: &mut Vec<u8>, dt: u16) {
    let mut d = vec![0u8; 16];
    d[0..2].copy_from_slice(&0x0600u16.to_le_bytes());
    d[2..4].copy_from_slice(&dt.to_le_bytes());
    record(out, 0x0809, &d);
}

/// The `Workbook` stream for these sheets (rows of cells).
pub fn workbook_stream(sheets: &[Vec<Vec<Cell>>]) -> Vec<u8> {
    let mut strings: Vec<String> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for sheet in sheets {
        for row in sheet {
            for c in row {
                if let Cell::Text(t) = c {
                    index.entry(t.clone()).or_insert_with(|| {
                        strings.push(t.clone());
                        strings.len() - 1
                    });
                }
            }
        }
    }
    let mut out = Vec::new();
    bof(&mut out, 0x0005);
    for k in 0..sheets.len() {
        // Positions are not used by readers that follow the stream; names are.
        let name = format!("Sheet{}", k + 1);
        let mut d = vec![0u8; 6];
        d.push(name.len() as u8);
        d.push(0);
        d.extend_from_slice(name.as_bytes());
        record(&mut out, 0x0085, &d);
    }
    sst(&mut out, &strings);
    record(&mut out, 0x000A, &[]);
    for sheet in sheets {
        bof(&mut out, 0x0010);
        for (r, row) in sheet.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let mut d = Vec::new();
                d.extend_from_slice(&(r as u16).to_le_bytes());
                d.extend_from_slice(&(c as u16).to_le_bytes());
                d.extend_from_slice(&15u16.to_le_bytes());
                match cell {
                    Cell::Text(t) => {
                        d.extend_from_slice(&(index[t] as u32).to_le_bytes());
                        record(&mut out, 0x00FD, &d);
                    }
                    Cell::Inline(t) => {
                        let units: Vec<u16> = t.encode_utf16().collect();
                        d.extend_from_slice(&(units.len() as u16).to_le_bytes());
                        d.push(1);
                        for u in units {
                            d.extend_from_slice(&u.to_le_bytes());
                        }
                        record(&mut out, 0x0204, &d);
                    }
                    Cell::Number(v) if v.fract() == 0.0 && v.abs() < 5e8 => {
                        let rk = ((*v as i32) << 2) as u32 | 2;
                        d.extend_from_slice(&rk.to_le_bytes());
                        record(&mut out, 0x027E, &d);
                    }
                    Cell::Number(v) => {
                        d.extend_from_slice(&v.to_le_bytes());
                        record(&mut out, 0x0203, &d);
                    }
                    Cell::Empty => {}
                }
            }
        }
        record(&mut out, 0x000A, &[]);
    }
    out
}

/// A whole `.xls` file for these sheets.
pub fn xls(sheets: &[Vec<Vec<Cell>>]) -> Vec<u8> {
    compound("Workbook", &workbook_stream(sheets))
}

/// A version-3 compound file (512-byte sectors) holding one stream.
pub fn compound(name: &str, stream: &[u8]) -> Vec<u8> {
    const SS: usize = 512;
    const END: u32 = 0xFFFF_FFFE;
    const FREE: u32 = 0xFFFF_FFFF;
    const FATSECT: u32 = 0xFFFF_FFFD;
    let small = stream.len() < 4096;
    // Layout: [FAT sectors][directory][mini table?][data sectors].
    let data_len = if small {
        stream.len().div_ceil(64) * 64
    } else {
        stream.len()
    };
    let data_sectors = data_len.div_ceil(SS).max(1);
    let mini_sectors = usize::from(small);
    let mut fat_count = 1;
    while fat_count * (SS / 4) < fat_count + 1 + mini_sectors + data_sectors {
        fat_count += 1;
    }
    assert!(
        fat_count <= 109,
        "test workbook too large for a header-only DIFAT"
    );
    let dir_at = fat_count;
    let mini_at = dir_at + 1;
    let data_at = mini_at + mini_sectors;
    let total = data_at + data_sectors;
    let mut fat = vec![FREE; fat_count * SS / 4];
    for f in fat.iter_mut().take(fat_count) {
        *f = FATSECT;
    }
    fat[dir_at] = END;
    if small {
        fat[mini_at] = END;
    }
    for (s, f) in fat.iter_mut().enumerate().take(total).skip(data_at) {
        *f = if s + 1 < total { (s + 1) as u32 } else { END };
    }
    let mut out = vec![0u8; 512];
    out[..8].copy_from_slice(&super::compound::SIGNATURE);
    out[0x18..0x1A].copy_from_slice(&0x003Eu16.to_le_bytes());
    out[0x1A..0x1C].copy_from_slice(&3u16.to_le_bytes());
    out[0x1C..0x1E].copy_from_slice(&0xFFFEu16.to_le_bytes());
    out[0x1E..0x20].copy_from_slice(&9u16.to_le_bytes());
    out[0x20..0x22].copy_from_slice(&6u16.to_le_bytes());
    out[0x2C..0x30].copy_from_slice(&(fat_count as u32).to_le_bytes());
    out[0x30..0x34].copy_from_slice(&(dir_at as u32).to_le_bytes());
    out[0x38..0x3C].copy_from_slice(&4096u32.to_le_bytes());
    let (mini_first, mini_n) = if small {
        (mini_at as u32, 1u32)
    } else {
        (END, 0)
    };
    out[0x3C..0x40].copy_from_slice(&mini_first.to_le_bytes());
    out[0x40..0x44].copy_from_slice(&mini_n.to_le_bytes());
    out[0x44..0x48].copy_from_slice(&END.to_le_bytes());
    for i in 0..109 {
        let v = if i < fat_count { i as u32 } else { FREE };
        out[0x4C + 4 * i..0x50 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    for f in &fat {
        out.extend_from_slice(&f.to_le_bytes());
    }
    // Directory: the root (owning the mini stream when there is one) and the stream.
    let mut dir = vec![0u8; SS];
    let entry = |d: &mut [u8], name: &str, kind: u8, start: u32, size: u32, child: u32| {
        let units: Vec<u16> = name.encode_utf16().collect();
        for (i, u) in units.iter().enumerate() {
            d[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        d[0x40..0x42].copy_from_slice(&((units.len() as u16 + 1) * 2).to_le_bytes());
        d[0x42] = kind;
        d[0x43] = 1;
        d[0x44..0x48].copy_from_slice(&FREE.to_le_bytes());
        d[0x48..0x4C].copy_from_slice(&FREE.to_le_bytes());
        d[0x4C..0x50].copy_from_slice(&child.to_le_bytes());
        d[0x74..0x78].copy_from_slice(&start.to_le_bytes());
        d[0x78..0x7C].copy_from_slice(&size.to_le_bytes());
    };
    let (root_start, root_size) = if small {
        (data_at as u32, data_len as u32)
    } else {
        (END, 0)
    };
    entry(&mut dir[..128], "Root Entry", 5, root_start, root_size, 1);
    let start = if small { 0 } else { data_at as u32 };
    entry(
        &mut dir[128..256],
        name,
        2,
        start,
        stream.len() as u32,
        FREE,
    );
    for k in 2..4 {
        dir[128 * k + 0x44..128 * k + 0x50].fill(0xFF);
    }
    out.extend_from_slice(&dir);
    if small {
        let mut mini = vec![0xFFu8; SS];
        let n = data_len / 64;
        for m in 0..n {
            let v = if m + 1 < n { (m + 1) as u32 } else { END };
            mini[4 * m..4 * m + 4].copy_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&mini);
    }
    let mut data = stream.to_vec();
    data.resize(data_sectors * SS, 0);
    out.extend_from_slice(&data);
    out
}
