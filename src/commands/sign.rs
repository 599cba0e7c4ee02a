//! `excite sign`: sign a bundle with a minisign secret key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use excite::bundle::sign::SigningKey;

#[derive(Args)]
pub struct SignArgs {
    /// Bundle folder or .tar.gz.
    pub bundle: PathBuf,
    /// Secret key file (from `excite keygen` or `minisign -G`).
    #[arg(long, short)]
    pub key: PathBuf,
    /// The signed comment [default: the time, the file and the bundle's name].
    #[arg(long)]
    pub comment: Option<String>,
    /// Print the key id and signed comment as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &SignArgs) -> Result<ExitCode> {
    let mut asked = Ok(());
    let key = SigningKey::from_file(&a.key, || super::key_password(false).unwrap_or_else(|e| {
        asked = Err(e);
        None
    }));
    asked?;
    let signature = excite::bundle::sign_bundle(&a.bundle, &key?, a.comment.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&signature)?);
    } else {
        println!("signed {} with key {} (comment: {})", a.bundle.display(), signature.key_id, signature.trusted_comment);
    }
    Ok(ExitCode::SUCCESS)
}
