//! `.npz` files (a zip of `.npy` arrays) that numpy opens with `numpy.load`.
//! Only what datasets need: 2-D little-endian float32 arrays, stored uncompressed.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::Error;

/// A row-major 2-D float32 array.
#[derive(Debug, Clone, PartialEq)]
pub struct Array2 {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Array2 {
    pub fn column(&self, j: usize) -> impl Iterator<Item = f32> + '_ {
        self.data.iter().skip(j).step_by(self.cols.max(1)).copied()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Serialises named arrays into the bytes of an `.npz` file.
pub fn to_bytes(arrays: &[(&str, &Array2)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, a) in arrays {
        let npy = npy_bytes(a);
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .large_file(npy.len() as u64 >= u32::MAX as u64);
        zip.start_file(format!("{name}.npy"), opts)
            .expect("writing to memory");
        zip.write_all(&npy).expect("writing to memory");
    }
    zip.finish().expect("writing to memory").into_inner()
}

fn npy_bytes(a: &Array2) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        a.rows, a.cols
    );
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * a.data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in &a.data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Largest array (one `.npy` entry) excite reads: 4 GiB.
pub const MAX_ARRAY_BYTES: u64 = 4 << 30;

/// Reads every array of an `.npz` file written by excite (or numpy, for 2-D `<f4` arrays).
pub fn read(path: &Path) -> Result<Vec<(String, Array2)>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |problem: String| {
        Error::format(
            path,
            problem,
            "regenerate the dataset with `excite simulate`",
        )
    };
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not an .npz (zip) file: {e}")))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| bad(format!("damaged zip entry {i}: {e}")))?;
        let name = f
            .name()
            .map_err(|e| bad(format!("damaged zip entry {i}: {e}")))?
            .trim_end_matches(".npy")
            .to_string();
        // a compressed entry may claim or inflate to any size: read at most the cap
        if f.size() > MAX_ARRAY_BYTES {
            return Err(bad(format!("array `{name}` declares {} bytes, over the {MAX_ARRAY_BYTES}-byte limit", f.size())));
        }
        let mut npy = Vec::new();
        (&mut f)
            .take(MAX_ARRAY_BYTES + 1)
            .read_to_end(&mut npy)
            .map_err(|e| bad(format!("array `{name}`: {e}")))?;
        if npy.len() as u64 > MAX_ARRAY_BYTES {
            return Err(bad(format!("array `{name}` inflates past the {MAX_ARRAY_BYTES}-byte limit")));
        }
        out.push((
            name.clone(),
            parse_npy(&npy).map_err(|p| bad(format!("array `{name}`: {p}")))?,
        ));
    }
    Ok(out)
}

fn parse_npy(b: &[u8]) -> Result<Array2, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not an .npy array".into());
    }
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(b.get(10..10 + hlen).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(format!(
            "only C-ordered little-endian float32 arrays are supported, found {}",
            header.trim()
        ));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in header")?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| "bad shape"))
        .collect::<Result<_, _>>()?;
    let (rows, cols) = match dims[..] {
        [r, c] => (r, c),
        [r] => (r, 1),
        _ => return Err(format!("expected a 2-D array, found shape ({shape})")),
    };
    let body = &b[10 + hlen..];
    let need = rows.checked_mul(cols).and_then(|n| n.checked_mul(4));
    if need != Some(body.len()) {
        return Err(format!(
            "shape ({rows}, {cols}) needs {} bytes, file has {}",
            need.map_or("more than 2^64".to_string(), |n| n.to_string()),
            body.len()
        ));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Array2 { rows, cols, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_headers_are_named_errors() {
        let npy = |shape: &str, body: &[u8]| {
            let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend((header.len() as u16).to_le_bytes());
            b.extend(header.as_bytes());
            b.extend(body);
            b
        };
        assert_eq!(parse_npy(&npy("1, 2", &[0; 8])).unwrap().data, vec![0.0, 0.0]);
        // rows · cols · 4 wraps around usize: refused, not indexed
        let e = parse_npy(&npy("4611686018427387904, 4", &[])).unwrap_err();
        assert!(e.contains("more than 2^64"), "{e}");
        assert!(parse_npy(&npy("3, 2", &[0; 8])).unwrap_err().contains("needs 24 bytes"));
        assert!(parse_npy(&npy("x, 2", &[])).is_err());
        assert!(parse_npy(b"\x93NUMPY\x01\x00\xff\xff").is_err());
    }

    #[test]
    fn round_trip() {
        let a = Array2 {
            rows: 3,
            cols: 2,
            data: vec![1.0, -2.0, 3.5, 4.0, 5.0, f32::MIN_POSITIVE],
        };
        let b = Array2 {
            rows: 0,
            cols: 4,
            data: vec![],
        };
        let bytes = to_bytes(&[("x", &a), ("empty", &b)]);
        let p = std::env::temp_dir().join(format!("excite-npz-{}.npz", std::process::id()));
        std::fs::write(&p, &bytes).unwrap();
        let back = read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(back, vec![("x".to_string(), a), ("empty".to_string(), b)]);
        assert_eq!(
            bytes,
            to_bytes(
                &back
                    .iter()
                    .map(|(n, a)| (n.as_str(), a))
                    .collect::<Vec<_>>()
            ),
            "not deterministic"
        );
    }
}
