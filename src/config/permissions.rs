//! Warnings about secrets that other users of the host can read (SPEC section 3 asks for secrets
//! through `${VAR}`; this catches the cases where they are not).
//!
//! - The config file itself, when group or others may read it and a token or password is written
//!   in it literally (a value that came from `${VAR}` is not in the file, so it is not reported).
//! - Credentials, nkey seed, Choria seed and TLS key files that group or others may read.
//!
//! These are warnings, not errors: some deployments protect the directory instead of the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::schema::Config;
use super::Problem;

/// Mode bits that let the group or others read a file.
const READABLE_BY_OTHERS: u32 = 0o044;

/// One warning per exposed secret, at its key, naming the file and the fix. `from_environment`
/// are the paths of values that are `${VAR}` references (in the file as references, not as
/// secrets, even when `ferry check --no-env` left them unexpanded).
pub fn warnings(config_path: &Path, config: &Config, from_environment: &[String]) -> Vec<Problem> {
    let mut out = Vec::new();
    let text = std::fs::read_to_string(config_path).unwrap_or_default();
    if let Some(mode) = exposed_mode(config_path) {
        for (name, connection) in &config.connections {
            let secrets = [
                ("token", &connection.token),
                ("password", &connection.password),
            ];
            for (key, secret) in secrets {
                let Some(secret) = secret else { continue };
                let path = format!("connections.{name}.{key}");
                if from_environment.contains(&path) {
                    continue;
                }
                if !secret.expose().is_empty() && text.contains(secret.expose()) {
                    out.push(Problem::new(
                        path,
                        format!(
                            "is written in {}, which other users can read (mode {mode:04o}); \
                             run `chmod 600 {}` or take the secret from the environment (\"${{VAR}}\")",
                            config_path.display(),
                            config_path.display()
                        ),
                    ));
                }
            }
        }
    }
    for (name, connection) in &config.connections {
        let tls_key = connection.tls.as_ref().and_then(|tls| tls.key.as_ref());
        let choria_seed = connection.choria.as_ref().map(|choria| &choria.seed_file);
        let files = [
            ("credentials", connection.credentials.as_ref()),
            ("nkey", connection.nkey.as_ref()),
            ("choria.seed_file", choria_seed),
            ("tls.key", tls_key),
        ];
        for (key, file) in files {
            let Some(file) = file else { continue };
            if let Some(mode) = exposed_mode(file) {
                out.push(Problem::new(
                    format!("connections.{name}.{key}"),
                    format!(
                        "{} can be read by other users (mode {mode:04o}); run `chmod 600 {}`",
                        file.display(),
                        file.display()
                    ),
                ));
            }
        }
    }
    out
}

/// The file's permission bits when group or others may read it.
fn exposed_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & READABLE_BY_OTHERS != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn config(text: &str, path: &Path) -> Config {
        super::super::parse_with_env(text, path, &|_| Ok("from-env-s3cret".into())).unwrap()
    }

    #[test]
    fn literal_secrets_in_a_readable_file_are_reported_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let text = "state_dir: /tmp/x\nconnections:\n  east: { servers: [\"nats://a:4222\"], token: \"lit-s3cret\" }\n";
        let path = write(dir.path(), "ferry.yaml", text, 0o644);
        let found = warnings(&path, &config(text, &path), &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "connections.east.token", "{found:?}");
        let message = &found[0].message;
        assert!(message.contains("0644") && message.contains("chmod 600"));
        assert!(!message.contains("lit-s3cret"), "never the secret itself");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(warnings(&path, &config(text, &path), &[]).is_empty());
    }

    #[test]
    fn secrets_from_the_environment_are_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let text = "state_dir: /tmp/x\nconnections:\n  east: { servers: [\"nats://a:4222\"], user: u, password: \"${P}\" }\n";
        let path = write(dir.path(), "ferry.yaml", text, 0o644);
        assert!(warnings(&path, &config(text, &path), &[]).is_empty());
        // Left unexpanded (`ferry check --no-env`), the reference is in the file, not the secret.
        let checked =
            super::super::check_str(text, &path, super::super::expand::Environment::Absent);
        let config = checked.config.as_ref().expect("valid");
        let references: Vec<String> = checked.references.iter().map(|r| r.path.clone()).collect();
        assert!(warnings(&path, config, &references).is_empty());
    }

    #[test]
    fn readable_key_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let creds = write(dir.path(), "ferry.creds", "x", 0o640);
        let seed = write(dir.path(), "ferry.nk", "S", 0o600);
        let text = format!(
            "state_dir: /tmp/x\nconnections:\n  east: {{ servers: [\"nats://a:4222\"], credentials: \"{}\" }}\n  west: {{ servers: [\"nats://b:4222\"], nkey: \"{}\" }}\n",
            creds.display(),
            seed.display()
        );
        let path = write(dir.path(), "ferry.yaml", &text, 0o600);
        let found = warnings(&path, &config(&text, &path), &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "connections.east.credentials", "{found:?}");
    }
}
