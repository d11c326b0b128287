//! Crossbar.io key files: a comment line, a blank line, then `tag: value` lines.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} has no '{tag}' line")]
    MissingTag { path: String, tag: &'static str },
    #[error("key file {path}: '{tag}' is not 32 bytes of hex")]
    BadKey { path: String, tag: &'static str },
}

pub const PUBLIC_TAG: &str = "public-key-ed25519";
pub const PRIVATE_TAG: &str = "private-key-ed25519";

/// Parses `tag: value` lines; comments and blank lines are skipped.
pub fn parse_tags(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty() && !k.contains(' '))
        .collect()
}

fn key_bytes(
    tags: &BTreeMap<String, String>,
    path: &Path,
    tag: &'static str,
) -> Result<[u8; 32], KeyFileError> {
    let hex_str = tags.get(tag).ok_or_else(|| KeyFileError::MissingTag {
        path: path.display().to_string(),
        tag,
    })?;
    let bytes = hex::decode(hex_str).map_err(|_| KeyFileError::BadKey {
        path: path.display().to_string(),
        tag,
    })?;
    bytes.try_into().map_err(|_| KeyFileError::BadKey {
        path: path.display().to_string(),
        tag,
    })
}

fn read(path: &Path) -> Result<BTreeMap<String, String>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse_tags(&text))
}

/// Reads the public key of a `.pub` file (or of a `.priv` file, which carries it too).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let bytes = key_bytes(&read(path)?, path, PUBLIC_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyFileError::BadKey {
        path: path.display().to_string(),
        tag: PUBLIC_TAG,
    })
}

/// Reads the private key of a `.priv` file; also returns the file's `user-id`, if any.
pub fn read_private_key(path: &Path) -> Result<(SigningKey, Option<String>), KeyFileError> {
    let tags = read(path)?;
    let bytes = key_bytes(&tags, path, PRIVATE_TAG)?;
    Ok((SigningKey::from_bytes(&bytes), tags.get("user-id").cloned()))
}

/// Writes `<dir>/<name>.priv` (mode 0600) and `<dir>/<name>.pub` in Crossbar's format.
pub fn write_key_pair(
    dir: &Path,
    name: &str,
    key: &SigningKey,
    user_id: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf), KeyFileError> {
    let werr = |p: &Path| {
        let path = p.display().to_string();
        move |source| KeyFileError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let created = crate::clock::now_iso();
    let public = hex::encode(key.verifying_key().as_bytes());
    let common = format!(
        "creator: fabric-master {}\ncreated-at: {created}\nuser-id: {user_id}\n{PUBLIC_TAG}: {public}\n",
        env!("CARGO_PKG_VERSION")
    );
    let pub_path = dir.join(format!("{name}.pub"));
    let priv_path = dir.join(format!("{name}.priv"));
    std::fs::write(
        &pub_path,
        format!("Crossbar.io user public key\n\n{common}"),
    )
    .map_err(werr(&pub_path))?;
    let private = format!(
        "Crossbar.io user private key - KEEP THIS SAFE!\n\n{common}{PRIVATE_TAG}: {}\n",
        hex::encode(key.to_bytes())
    );
    write_private(&priv_path, private.as_bytes()).map_err(werr(&priv_path))?;
    Ok((priv_path, pub_path))
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let (priv_path, pub_path) =
            write_key_pair(dir.path(), "default", &key, "alice@example.com").unwrap();
        assert_eq!(read_public_key(&pub_path).unwrap(), key.verifying_key());
        let (back, user) = read_private_key(&priv_path).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        assert_eq!(user.as_deref(), Some("alice@example.com"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&priv_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn reads_a_crossbar_generated_node_key() {
        let text = "Crossbar.io node public key\n\ncreator: crossbar\nnode-authid: node1\npublic-key-ed25519: 2a0dc1fa0f3ed5e0a3d9dcee4c8b1ec9e0b62e07f1c3b9e6b1a3fa2a04ea8b0f\npublic-adr-eth: 0x1234\n";
        let tags = parse_tags(text);
        assert_eq!(tags["node-authid"], "node1");
        assert_eq!(tags[PUBLIC_TAG].len(), 64);
    }

    #[test]
    fn missing_tag_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pub");
        std::fs::write(&p, "comment\n\nuser-id: a\n").unwrap();
        assert!(matches!(
            read_public_key(&p),
            Err(KeyFileError::MissingTag { .. })
        ));
    }
}
