//! Where Strata's model cache lives: the one rule that the fetch script
//! (`scripts/fetch-models.sh`), the CLI's default model and every test
//! follow.
//!
//! `$STRATA_MODELS_DIR` if set, else `$XDG_CACHE_HOME/strata/models`, else
//! `$HOME/.cache/strata/models`. Empty variables count as unset, as the
//! shell's `${VAR:-default}` in the fetch script treats them.

use std::ffi::OsString;
use std::path::PathBuf;

/// The model cache directory (it may not exist yet).
pub fn dir() -> PathBuf {
    resolve(
        std::env::var_os("STRATA_MODELS_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The cache rule as a pure function of the three variables.
pub fn resolve(
    models_dir: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    if let Some(d) = set(models_dir) {
        return d;
    }
    strata_cache(xdg_cache_home, home)
        .unwrap_or_else(|| PathBuf::from(".cache/strata"))
        .join("models")
}

/// Strata's directory in the user's cache: `$XDG_CACHE_HOME/strata`, else
/// `$HOME/.cache/strata`; `None` when neither is set. The model cache and
/// the shard-verification stamps ([`crate::shard::verify`]) live in it.
pub fn strata_cache(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    set(xdg_cache_home)
        .or_else(|| set(home).map(|h| h.join(".cache")))
        .map(|base| base.join("strata"))
}

/// A variable's value as a path; empty counts as unset.
fn set(v: Option<OsString>) -> Option<PathBuf> {
    v.filter(|s| !s.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::path::PathBuf;

    #[test]
    fn follows_the_fetch_script() {
        let s = |v: &str| Some(v.into());
        assert_eq!(resolve(s("/m"), s("/x"), s("/h")), PathBuf::from("/m"));
        assert_eq!(
            resolve(None, s("/x"), s("/h")),
            PathBuf::from("/x/strata/models")
        );
        assert_eq!(
            resolve(s(""), s(""), s("/h")),
            PathBuf::from("/h/.cache/strata/models")
        );
        assert_eq!(
            resolve(None, None, s("/h")),
            PathBuf::from("/h/.cache/strata/models")
        );
    }
}
