//! `losses.csv`: one row per validation of every window (step, learning
//! rate, training and validation loss, validation MAE, elapsed seconds),
//! rewritten whole at each validation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsio::write_atomic;
use crate::Error;

pub const LOG_FILE: &str = "losses.csv";

/// One row of `losses.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossRow {
    pub window: usize,
    pub step: usize,
    pub lr: f64,
    #[serde(deserialize_with = "crate::metrics::null_as_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "crate::metrics::null_as_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "crate::metrics::null_as_nan")]
    pub val_mae: f64,
    pub elapsed_s: f64,
}


/// Reads a checkpoint's log: rows, or (checkpoints of excite before the
/// csv crate) the rows as preformatted CSV lines.
pub fn rows_or_lines<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<LossRow>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Row(LossRow),
        Line(String),
    }
    let mut rows = Vec::new();
    for e in Vec::<Entry>::deserialize(d)? {
        rows.push(match e {
            Entry::Row(r) => r,
            Entry::Line(l) => {
                let text = format!("window,step,lr,train_loss,val_loss,val_mae,elapsed_s\n{l}\n");
                let mut reader = csv::Reader::from_reader(text.as_bytes());
                let row = reader.deserialize().next().and_then(Result::ok);
                row.ok_or_else(|| serde::de::Error::custom(format!("`{l}` is not a losses.csv row")))?
            }
        });
    }
    Ok(rows)
}

/// Replaces window `window`'s rows in `dir/losses.csv` with `rows`, keeping
/// the other windows' rows, ordered by window.
pub fn write(dir: &Path, window: usize, rows: &[LossRow]) -> Result<(), Error> {
    let path = dir.join(LOG_FILE);
    let mut all: Vec<LossRow> = match std::fs::read(&path) {
        // a log this run cannot read is rewritten from the checkpoints' rows
        Ok(bytes) => csv::Reader::from_reader(&bytes[..]).deserialize().filter_map(Result::ok).filter(|r: &LossRow| r.window != window).collect(),
        Err(_) => Vec::new(),
    };
    all.extend(rows.iter().cloned());
    all.sort_by_key(|r| r.window);
    write_atomic(&path, &crate::fsio::csv_bytes(&all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_replaced_and_kept_in_order() {
        let dir = std::env::temp_dir().join(format!("excite-losslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let row = |window, step| LossRow { window, step, lr: 1e-3, train_loss: 0.5, val_loss: 0.25, val_mae: 0.125, elapsed_s: 1.5 };
        write(&dir, 1, &[row(1, 10)]).unwrap();
        write(&dir, 0, &[row(0, 10), row(0, 20)]).unwrap();
        write(&dir, 1, &[row(1, 10), row(1, 20)]).unwrap();
        let text = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "window,step,lr,train_loss,val_loss,val_mae,elapsed_s");
        assert_eq!(lines[1..].iter().map(|l| &l[..4]).collect::<Vec<_>>(), ["0,10", "0,20", "1,10", "1,20"]);
        assert_eq!(lines[1], "0,10,0.001,0.5,0.25,0.125,1.5");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checkpoints_with_preformatted_lines_still_load() {
        #[derive(Deserialize)]
        struct Log {
            #[serde(deserialize_with = "rows_or_lines")]
            log: Vec<LossRow>,
        }
        let old: Log = serde_json::from_str(r#"{"log": ["0,100,3.000e-3,1.273400e-1,1.247839e-1,7.846902e-2,0.25"]}"#).unwrap();
        assert_eq!((old.log[0].step, old.log[0].lr, old.log[0].elapsed_s), (100, 3e-3, 0.25));
        let new: Log = serde_json::from_str(&format!(r#"{{"log": [{}]}}"#, serde_json::to_string(&old.log[0]).unwrap())).unwrap();
        assert_eq!(new.log, old.log);
        assert!(serde_json::from_str::<Log>(r#"{"log": ["not,a,row"]}"#).is_err());
    }
}
