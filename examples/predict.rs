//! Loads an excite bundle (folder or .tar.gz) and prints the outputs at
//! t = 0, 5, …, 25 — the Rust side of loading surrogates in other programs.
//!
//! cargo run --release --example predict -- runs/quick/package/quick.tar.gz

fn main() -> Result<(), excite::Error> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "runs/quick/package/quick.tar.gz".into());
    let mut s = excite::Surrogate::load(&path)?;
    if s.inputs() != 1 {
        eprintln!("this example feeds t only; the bundle takes {} inputs", s.inputs());
        std::process::exit(1);
    }
    let t: Vec<f32> = (0..6).map(|i| i as f32 * 5.0).collect();
    let y = s.predict(&t)?;
    println!("# engine: {}", s.engine());
    for (i, t) in t.iter().enumerate() {
        let row: Vec<String> = y[i * s.outputs()..(i + 1) * s.outputs()].iter().map(|v| format!("{v:.9}")).collect();
        println!("{t} {}", row.join(" "));
    }
    Ok(())
}
