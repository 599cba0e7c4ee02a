//! `excite keygen`: a minisign key pair for signing bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct KeygenArgs {
    /// Key name: writes NAME.key and NAME.pub.
    pub name: PathBuf,
    /// Store the secret key without a password (for CI signers whose secret store protects the file).
    #[arg(long)]
    pub unencrypted: bool,
    /// Print the key id and file names as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &KeygenArgs) -> Result<ExitCode> {
    let with_ext = |ext: &str| {
        let mut p = a.name.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let (secret, public) = (with_ext(".key"), with_ext(".pub"));
    let password = if a.unencrypted {
        None
    } else {
        let p = super::key_password(true)?
            .ok_or_else(|| anyhow::anyhow!("keygen: the secret key needs a password\n\nhint: set EXCITE_KEY_PASSWORD, run on a terminal, or pass --unencrypted"))?;
        Some(p)
    };
    let id = excite::bundle::sign::generate_keys(&secret, &public, password)?;
    if a.json {
        println!("{}", serde_json::json!({ "key_id": id, "secret_key": secret, "public_key": public }));
    } else {
        println!("key {id}: secret {} (keep it private), public {} (give it to those who load your bundles)", secret.display(), public.display());
    }
    Ok(ExitCode::SUCCESS)
}
