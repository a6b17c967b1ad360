//! The first admin's password for `dure up`.
//!
//! `DURE_ADMIN_PASSWORD` wins when set. Otherwise the password saved in
//! `<data dir>/admin-password` is passed on. On the very first run (no
//! identity database yet) one is generated, saved with mode 0600, and printed
//! once.

use anyhow::Context;
use base64::Engine as _;
use rand::RngCore;
use std::path::Path;

pub fn admin_password(data_dir: &Path, sqlite: bool) -> anyhow::Result<Option<String>> {
    if std::env::var_os("DURE_ADMIN_PASSWORD").is_some() {
        return Ok(None); // inherited by the child as it is
    }
    let file = data_dir.join("admin-password");
    if file.is_file() {
        let saved = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return Ok(Some(saved.trim().to_owned()));
    }
    let first_run = !sqlite || !data_dir.join("identity.db").exists();
    if !first_run {
        return Ok(None);
    }
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&file, &password)?;
    println!();
    println!("First start: user `admin` gets the password  {password}");
    println!("(saved in {}; it is not shown again)", file.display());
    println!();
    Ok(Some(password))
}

fn write_private(file: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut handle = options
        .open(file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    writeln!(handle, "{text}").with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
