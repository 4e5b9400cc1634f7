//! `--users FILE`: who may connect, with which password, and what each may
//! do; re-read on SIGHUP.
//!
//! The file is TOML, one `[[user]]` table per user:
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # mq-actix --hash-password
//! subscribe = ["news", "jobs.*"]
//! publish = ["jobs.*"]
//! replay = ["news"]
//! ```
//!
//! Passwords are checked with argon2, which is slow and memory-hungry on
//! purpose; a check runs on tokio's blocking threads, never on a worker
//! (where it would stall every session of that thread), and at most
//! [`MAX_CONCURRENT_VERIFICATIONS`] run at once.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use argon2::{Algorithm, Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::permissions::{Permissions, Topics};
use crate::config::MAX_CONCURRENT_VERIFICATIONS;

/// One user of the users file. Its `Debug` leaves out the password hash, so
/// that no log line can carry it.
pub struct User {
    pub name: Box<str>,
    /// `None`: the user can only come in with a client certificate.
    password_hash: Option<Box<str>>,
    pub permissions: Permissions,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// The users file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    user: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    password_hash: Option<String>,
    #[serde(default)]
    subscribe: Topics,
    #[serde(default)]
    publish: Topics,
    #[serde(default)]
    replay: Topics,
}

/// Every user of one reading of the users file, by name.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<Box<str>, Arc<User>>,
}

impl Users {
    /// Reads and checks a users file; the error is one line that names the
    /// file (and the user or line at fault) but never a hash.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read the users file {}: {error}", path.display()))?;
        Users::parse(&text).map_err(|error| format!("users file {}: {error}", path.display()))
    }

    /// Parses the text of a users file.
    pub fn parse(text: &str) -> Result<Users, String> {
        let file: File = toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1);
            match line {
                Some(line) => format!("line {line}: {}", error.message().trim()),
                None => error.message().trim().to_owned(),
            }
        })?;
        let mut by_name = HashMap::with_capacity(file.user.len());
        for entry in file.user {
            if let Some(hash) = &entry.password_hash {
                check_hash(hash).map_err(|error| format!("user {:?}: {error}", entry.name))?;
            }
            let user = User {
                name: entry.name.into(),
                password_hash: entry.password_hash.map(Into::into),
                permissions: Permissions {
                    subscribe: entry.subscribe,
                    publish: entry.publish,
                    replay: entry.replay,
                },
            };
            if by_name.contains_key(&user.name) {
                return Err(format!("user {:?} is listed twice", user.name));
            }
            by_name.insert(user.name.clone(), Arc::new(user));
        }
        Ok(Users { by_name })
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.by_name.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// An argon2 PHC string, as `--hash-password` prints.
fn check_hash(hash: &str) -> Result<(), &'static str> {
    let parsed = PasswordHash::new(hash).map_err(|_| {
        "password_hash is not a PHC string (make one with mq-actix --hash-password)"
    })?;
    Algorithm::try_from(parsed.algorithm.as_str())
        .map(|_| ())
        .map_err(|_| "password_hash is not an argon2 hash (make one with mq-actix --hash-password)")
}

/// The users of a running broker: the file it was started with, re-read on
/// SIGHUP, and the bound on concurrent password checks.
#[derive(Debug)]
pub struct Authenticator {
    path: PathBuf,
    /// Swapped whole on reload; a session keeps the `User` it logged in as,
    /// so a reload never changes a connection under way.
    users: RwLock<Arc<Users>>,
    verifying: Arc<Semaphore>,
}

impl Authenticator {
    /// Reads `path`; the broker does not start when it is wrong.
    pub fn open(path: &Path) -> Result<Arc<Authenticator>, String> {
        let users = Users::load(path)?;
        Ok(Arc::new(Authenticator {
            path: path.to_owned(),
            users: RwLock::new(Arc::new(users)),
            verifying: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFICATIONS)),
        }))
    }

    /// Re-reads the file; when it is wrong, the users as they were stay.
    /// Returns how many users it now has.
    pub fn reload(&self) -> Result<usize, String> {
        let users = Users::load(&self.path)?;
        let count = users.len();
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(users);
        Ok(count)
    }

    fn users(&self) -> Arc<Users> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The user a client certificate's common name stands for.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users().get(name)
    }

    /// The user, if `password` is theirs. An unknown user, or one without a
    /// password, costs the same check as a known one, so that the answer's
    /// timing does not tell which names exist.
    pub async fn verify(&self, name: &str, password: String) -> Option<Arc<User>> {
        let user = self.user(name);
        let hash = user.as_ref().and_then(|user| user.password_hash.clone());
        let permit = self.verifying.clone().acquire_owned().await.ok()?;
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match hash {
                Some(hash) => password_matches(&password, &hash),
                None => {
                    password_matches(&password, unknown_user_hash());
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        user.filter(|_| matched)
    }
}

/// Whether `password` hashes to `hash` (a checked PHC string).
fn password_matches(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// What a password is checked against when there is no user (or no
/// password) to check it against: the check costs the same, and its result
/// is ignored. Made once, on the first such attempt.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("").unwrap_or_default())
}

/// The argon2id PHC string of `password` with a fresh random salt and the
/// crate's default (OWASP-recommended) cost, for the users file.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| format!("cannot hash the password: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_file_parses_with_its_permissions() {
        let hash = hash_password("secret").unwrap();
        let users = Users::parse(&format!(
            "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n\
             subscribe = [\"news\", \"jobs.*\"]\npublish = [\"*\"]\n\
             [[user]]\nname = \"bob\"\n"
        ))
        .unwrap();
        assert_eq!(users.len(), 2);
        let alice = users.get("alice").unwrap();
        assert!(alice.permissions.subscribe.allows("jobs.1"));
        assert!(!alice.permissions.replay.allows("news"));
        assert!(password_matches(
            "secret",
            alice.password_hash.as_deref().unwrap()
        ));
        assert!(!password_matches(
            "Secret",
            alice.password_hash.as_deref().unwrap()
        ));
        assert!(users.get("bob").unwrap().password_hash.is_none());
    }

    #[test]
    fn bad_files_are_refused_with_one_line_that_shows_no_hash() {
        for (text, wanted) in [
            ("[[user]]\nname = \"a\"\npassword_hash = \"hunter2\"\n", "PHC"),
            (
                "[[user]]\nname = \"a\"\npassword_hash = \"$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E\"\n",
                "argon2",
            ),
            ("[[user]]\nname = \"a\"\n[[user]]\nname = \"a\"\n", "twice"),
            ("[[user]]\nname = \"a\"\nsubscrib = [\"x\"]\n", "line 3"),
            ("[[user]\n", "line 1"),
        ] {
            let error = Users::parse(text).unwrap_err();
            assert!(error.contains(wanted), "{error:?} for {text:?}");
            assert!(!error.contains('\n'), "{error:?}");
            assert!(!error.contains("hunter2"), "{error:?}");
        }
    }

    #[test]
    fn debug_output_leaves_the_hash_out() {
        let hash = hash_password("x").unwrap();
        let users = Users::parse(&format!(
            "[[user]]\nname = \"a\"\npassword_hash = \"{hash}\"\n"
        ))
        .unwrap();
        assert!(!format!("{users:?}").contains(&hash));
    }
}
