//! Signed bundles. A bundle's `SHA256SUMS` lists the sha256 of every other
//! file, `bundle.json` included, so one signature over it covers the whole
//! bundle. The signature is minisign's (Ed25519 over a BLAKE2b-512 prehash,
//! with a signed "trusted comment"), written as `SHA256SUMS.minisig` inside
//! the bundle folder, so a folder and its `.tar.gz` carry the same one, and
//! the real minisign checks it as well:
//! `minisign -Vm BUNDLE/SHA256SUMS -p KEY.pub && (cd BUNDLE && sha256sum -c SHA256SUMS)`.
//! Keys are minisign's files: one made by `minisign -G` signs here, and one
//! made here (`excite keygen`) signs with minisign.

use std::path::{Path, PathBuf};

use ct_codecs::{Base64, Decoder};
use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SignatureBox};

use crate::Error;

/// The signature file inside a bundle folder.
pub const SIGNATURE_FILE: &str = "SHA256SUMS.minisig";
/// Key and signature files are a few hundred bytes; anything far larger is not one.
const MAX_SMALL_FILE: u64 = 64 << 10;

/// minisign's (libsodium's "sensitive") scrypt limits, the most a key may ask for.
const MAX_KDF_OPS: u64 = 1 << 25;
const MAX_KDF_MEM: u64 = 1 << 30;

const SIGN_HINT: &str = "sign it with `excite sign BUNDLE --key KEY`, or load it without a trusted key";

/// minisign's key id: the key number as a little-endian u64, in hex.
fn key_id(keynum: &[u8]) -> String {
    let mut b = [0u8; 8];
    b.copy_from_slice(&keynum[..8.min(keynum.len())]);
    format!("{:016X}", u64::from_le_bytes(b))
}

fn read_small(path: &Path, what: &str) -> Result<String, Error> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() || meta.len() > MAX_SMALL_FILE {
        return Err(Error::format(path, format!("not a {what}: a {what} is a small regular file"), format!("pass the {what} minisign or `excite keygen` wrote")));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| Error::format(path, format!("not a {what}: not text"), format!("pass the {what} minisign or `excite keygen` wrote")))
}

/// A public key whose signatures are trusted.
#[derive(Clone)]
pub struct TrustedKey {
    key: PublicKey,
    id: String,
    source: String,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKey({} from {})", self.id, self.source)
    }
}

impl TrustedKey {
    /// Reads a minisign public key file (`untrusted comment: …` and the key
    /// line), as `minisign -G` and `excite keygen` write them.
    pub fn from_file(path: &Path) -> Result<TrustedKey, Error> {
        let text = read_small(path, "public key file")?;
        TrustedKey::parse(&text, &path.display().to_string()).map_err(|e| e.in_file(path))
    }

    /// A public key from the text of a key file, or the bare base64 key line
    /// (`RW…`, as `minisign -P` takes it). `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> Result<TrustedKey, Error> {
        let bad = |why: String| Error::invalid("public key", format!("{source}: {why}"), "pass a minisign public key file (`excite keygen` or `minisign -G` writes one) or its `RW…` line");
        let text = text.trim();
        let key = if text.lines().count() >= 2 {
            PublicKeyBox::from_string(text).and_then(|b| b.into_public_key())
        } else {
            PublicKey::from_base64(text)
        }
        .map_err(|e| bad(format!("not a minisign public key ({e})")))?;
        let id = key_id(key.keynum());
        Ok(TrustedKey { key, id, source: source.to_string() })
    }

    /// minisign's key id, e.g. `8C9F0A1E2B3C4D5E`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A secret key, ready to sign.
pub struct SigningKey {
    key: SecretKey,
    public: PublicKey,
    id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret itself
        write!(f, "SigningKey({})", self.id)
    }
}

impl SigningKey {
    /// Reads a minisign secret key file. An encrypted one (minisign's
    /// default) takes its password from `password`, asked only then.
    pub fn from_file(path: &Path, password: impl FnOnce() -> Option<String>) -> Result<SigningKey, Error> {
        let text = read_small(path, "secret key file")?;
        let bad = |why: String| Error::format(path, format!("not a usable minisign secret key: {why}"), "pass the secret key file `excite keygen` or `minisign -G` wrote (its `.key`, not the `.pub`)");
        let line = text.lines().nth(1).ok_or_else(|| bad("no key line after the comment".into()))?;
        let bytes = Base64::decode_to_vec(line.trim(), None).map_err(|_| bad("the key line is not base64".into()))?;
        let parsed = SecretKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut boxed = minisign::SecretKeyBox::from_string(&text).map_err(|e| bad(e.to_string()))?;
        if let Some(fixed) = with_checksum(&bytes) {
            boxed = minisign::SecretKeyBox::from_string(&format!("untrusted comment: minisign secret key\n{fixed}\n")).map_err(|e| bad(e.to_string()))?;
        }
        let key = if parsed.is_encrypted() {
            // scrypt's cost comes from the file: at most what minisign itself
            // writes (libsodium's "sensitive" limits, 1 GiB and a few seconds)
            let le = |r: std::ops::Range<usize>| bytes.get(r).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_le_bytes);
            let (ops, mem) = (le(38..46), le(46..54));
            if ops > MAX_KDF_OPS || mem > MAX_KDF_MEM {
                return Err(bad(format!("its password hashing asks for {ops} operations and {mem} bytes, beyond minisign's {MAX_KDF_OPS} and {MAX_KDF_MEM}")));
            }
            let Some(password) = password() else {
                return Err(Error::invalid("secret key", format!("{} is encrypted with a password", path.display()), "set EXCITE_KEY_PASSWORD, or run `excite sign` on a terminal, which asks for it"));
            };
            // never None here: the crate would prompt on the terminal by itself
            boxed.into_secret_key(Some(password)).map_err(|e| Error::invalid("secret key", format!("{}: {e}", path.display()), "check the password (EXCITE_KEY_PASSWORD)"))?
        } else {
            boxed.into_unencrypted_secret_key().map_err(|e| bad(e.to_string()))?
        };
        let public = PublicKey::from_secret_key(&key).map_err(|e| bad(e.to_string()))?;
        let id = key_id(public.keynum());
        Ok(SigningKey { key, public, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// minisign 0.11 writes an unencrypted key (`minisign -G -W`) with its
/// checksum left zero, and checks none for such keys; the crate requires it.
/// For such a key, the key line with its checksum (BLAKE2b-256 of the
/// algorithm, key number and key, as minisign defines it) filled in.
fn with_checksum(bytes: &[u8]) -> Option<String> {
    use blake2::digest::{consts::U32, Digest};
    use ct_codecs::Encoder;
    // sig_alg 2, kdf_alg 2, chk_alg 2, salt 32, opslimit 8, memlimit 8, keynum 8, sk 64, chk 32
    let unencrypted = bytes.len() == 158 && bytes[2..4] == [0, 0];
    if !unencrypted || bytes[126..].iter().any(|&b| b != 0) {
        return None;
    }
    let mut h = blake2::Blake2b::<U32>::new();
    h.update(&bytes[..2]);
    h.update(&bytes[54..126]);
    let mut fixed = bytes.to_vec();
    fixed[126..].copy_from_slice(&h.finalize());
    ct_codecs::Base64::encode_to_string(&fixed).ok()
}

/// Writes a new key pair, `secret` (mode 0600) and `public`, in minisign's
/// format; the secret key is encrypted with `password` where given (scrypt,
/// as minisign does). Refuses to replace existing files. Returns the key id.
pub fn generate_keys(secret: &Path, public: &Path, password: Option<String>) -> Result<String, Error> {
    for p in [secret, public] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::invalid("keygen", format!("{} exists", p.display()), "choose another name, or remove the old key first (signatures made with it then no longer verify against a new key)"));
        }
    }
    let failed = |e: minisign::PError| Error::unavailable("key generation", e.to_string(), "");
    let pair = match password {
        Some(p) => KeyPair::generate_encrypted_keypair(Some(p)),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(failed)?;
    let id = key_id(pair.pk.keynum());
    let sk = pair.sk.to_box(Some(&format!("excite secret key {id}"))).map_err(failed)?.into_string();
    let pk = pair.pk.to_box().map_err(failed)?.into_string();
    write_new(secret, sk.as_bytes(), 0o600)?;
    if let Err(e) = write_new(public, pk.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(secret);
        return Err(e);
    }
    Ok(id)
}

/// Writes `bytes` to `path`, which must not exist, atomically: a private
/// temporary file hard-linked into place (a link never replaces a file).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result.map_err(|e| Error::io(path, e))
}

/// A signature that was checked, or found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signature {
    pub key_id: String,
    /// The signed comment (minisign's trusted comment).
    pub trusted_comment: String,
}

/// What a bundle says about its signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Signed {
    Unsigned,
    /// Signed, not checked: no trusted key was given. `key_id` is None when
    /// the signature file is not readable as one.
    Unchecked { key_id: Option<String> },
    /// Checked against the trusted key.
    Verified(Signature),
}

/// Signs the bundle folder `dir` whose checksum file holds `sums`: writes
/// [`SIGNATURE_FILE`] (replacing an earlier signature atomically).
pub(crate) fn sign_sums(dir: &Path, sums: &[u8], key: &SigningKey, trusted_comment: &str) -> Result<Signature, Error> {
    let sig = minisign::sign(Some(&key.public), &key.key, std::io::Cursor::new(sums), Some(trusted_comment), Some(&format!("signature from excite secret key {}", key.id)))
        .map_err(|e| Error::unavailable("signing", e.to_string(), "check the secret key"))?;
    crate::fsio::write_atomic(&dir.join(SIGNATURE_FILE), sig.into_string().as_bytes())?;
    Ok(Signature { key_id: key.id.clone(), trusted_comment: trusted_comment.to_string() })
}

/// Checks `dir`'s signature over `sums` (the bytes of its checksum file)
/// against `trusted`; without a trusted key, says what is there unchecked.
pub(crate) fn check(dir: &Path, sums: &[u8], trusted: Option<&TrustedKey>) -> Result<Signed, Error> {
    let path = dir.join(SIGNATURE_FILE);
    let present = std::fs::symlink_metadata(&path).is_ok();
    let Some(trusted) = trusted else {
        if !present {
            return Ok(Signed::Unsigned);
        }
        let key_id = read_small(&path, "signature file").ok().and_then(|t| parse_signature(&t).ok()).map(|s| key_id(s.keynum()));
        return Ok(Signed::Unchecked { key_id });
    };
    if !present {
        return Err(Error::format(dir, format!("unsigned: no {SIGNATURE_FILE}, and a signature by key {} is required", trusted.id), SIGN_HINT));
    }
    let text = read_small(&path, "signature file")?;
    let sig = parse_signature(&text).map_err(|why| Error::format(&path, format!("not a minisign signature ({why})"), SIGN_HINT))?;
    let signer = key_id(sig.keynum());
    if signer != trusted.id {
        return Err(Error::format(&path, format!("signed by key {signer}, not by the trusted key {} ({})", trusted.id, trusted.source), "get the bundle from the source whose key you trust, or trust the key that signed it"));
    }
    // the crate is handed only well-formed signatures (parse_signature); a
    // panic inside it would still be an error here, not the caller's crash
    std::panic::catch_unwind(|| minisign::verify(&trusted.key, &sig, std::io::Cursor::new(sums), true, false, false))
        .unwrap_or_else(|_| Err(minisign::PError::new(minisign::ErrorKind::Verify, "malformed signature")))
        .map_err(|e| Error::format(&path, format!("the signature does not match the bundle's SHA256SUMS ({e}): the bundle was changed after signing"), "get the bundle again from its source"))?;
    let trusted_comment = sig.trusted_comment().unwrap_or_default();
    Ok(Signed::Verified(Signature { key_id: signer, trusted_comment }))
}

/// A minisign signature file, its layout checked before the crate reads it:
/// minisign 0.10 panics on a global signature shorter than 64 bytes (found
/// by tests/fuzz.rs). Four lines: untrusted comment, the signature (2-byte
/// algorithm, 8-byte key number, 64 bytes), `trusted comment: …`, the
/// 64-byte signature over signature and comment.
fn parse_signature(text: &str) -> Result<SignatureBox, String> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() < 4 {
        return Err(format!("{} lines, not 4", lines.len()));
    }
    let decoded = |line: &str, what: &str, len: usize| match Base64::decode_to_vec(line.trim(), None) {
        Ok(b) if b.len() == len => Ok(()),
        Ok(b) => Err(format!("the {what} is {} bytes, not {len}", b.len())),
        Err(_) => Err(format!("the {what} is not base64")),
    };
    if !lines[0].starts_with("untrusted comment: ") || !lines[2].starts_with("trusted comment: ") {
        return Err("the comment lines are missing".into());
    }
    decoded(lines[1], "signature", 74)?;
    decoded(lines[3], "global signature", 64)?;
    std::panic::catch_unwind(|| SignatureBox::from_string(text)).map_err(|_| "malformed".to_string())?.map_err(|e| e.to_string())
}

/// The trusted comment excite signs: when, what, which bundle.
pub(crate) fn default_comment(name: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("timestamp:{t}\tfile:{}\tbundle:{name}", super::SUMS_FILE)
}

/// Where the signed copy of an archive is assembled: a fresh private folder
/// (0700, created here, never an existing one) in the temp directory.
pub(crate) fn scratch_dir() -> Result<PathBuf, Error> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("excite-sign-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}
