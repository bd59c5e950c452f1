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
    let set = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(d) = set(models_dir) {
        return d;
    }
    set(xdg_cache_home)
        .unwrap_or_else(|| set(home).unwrap_or_default().join(".cache"))
        .join("strata/models")
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
