//! A small command-line parser: `-x VALUE`, `--long VALUE`, `--long=VALUE`,
//! flags, and positional arguments, with errors that name the argument.
//!
//! `-h` and `--help` in an option's place (not as another option's value)
//! make [`Args::parse`] return [`HELP`] as its error, so every command
//! answers them the same way: `main` prints that command's usage and exits
//! with 0.

use std::collections::HashMap;
use std::str::FromStr;

/// The "error" [`Args::parse`] returns when help was asked for. No real
/// error message starts with a NUL, so it cannot be mistaken for one.
pub const HELP: &str = "\0help";

pub struct Args {
    values: HashMap<String, Vec<String>>,
    flags: Vec<String>,
    pub positional: Vec<String>,
    /// An option given last without its value; reported by
    /// [`Args::check_known`] after unknown names, so that a typo is
    /// reported as one rather than as a missing value.
    missing_value: Option<String>,
}

impl Args {
    /// Parse `raw` given which names are boolean flags; every other option
    /// takes a value. Short aliases map to long names through `aliases`.
    pub fn parse(
        raw: &[String],
        flag_names: &[&str],
        aliases: &[(&str, &str)],
    ) -> Result<Args, String> {
        let mut a = Args {
            values: HashMap::new(),
            flags: Vec::new(),
            positional: Vec::new(),
            missing_value: None,
        };
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                a.positional.extend(it.by_ref().cloned());
                break;
            }
            if !arg.starts_with('-') || arg == "-" || arg.parse::<f64>().is_ok() {
                a.positional.push(arg.clone());
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let name = aliases
                .iter()
                .find(|(s, _)| *s == name)
                .map(|(_, l)| l.to_string())
                .unwrap_or(name);
            if name == "-h" || name == "--help" {
                return Err(HELP.into());
            }
            let key = name.trim_start_matches('-').to_string();
            if flag_names.contains(&key.as_str()) {
                a.flags.push(key);
                continue;
            }
            let value = match inline.or_else(|| it.next().cloned()) {
                Some(v) => v,
                None => {
                    a.missing_value = Some(name);
                    a.values.entry(key).or_default();
                    break;
                }
            };
            a.values.entry(key).or_default().push(value);
        }
        Ok(a)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(|s| s.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.str(name) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| format!("--{name}: '{s}' is not a valid value")),
        }
    }

    /// Names given that are not in `known` (to reject typos), then an
    /// option without its value.
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for k in self.values.keys().chain(self.flags.iter()) {
            if !known.contains(&k.as_str()) {
                return Err(format!("unknown option --{k} (--help lists the options)"));
            }
        }
        match &self.missing_value {
            Some(name) => Err(format!("{name} needs a value")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, HELP};

    fn parse(raw: &[&str]) -> Result<Args, String> {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        Args::parse(&raw, &["json"], &[("-p", "--prompt")])
    }

    #[test]
    fn help_in_an_options_place_asks_for_help() {
        for raw in [
            &["--help"][..],
            &["-h"],
            &["--json", "-h"],
            &["-p", "x", "--help"],
        ] {
            assert_eq!(parse(raw).err().as_deref(), Some(HELP), "{raw:?}");
        }
    }

    #[test]
    fn help_as_a_value_or_after_double_dash_is_a_value() {
        let a = parse(&["-p", "--help"]).unwrap();
        assert_eq!(a.str("prompt"), Some("--help"));
        let a = parse(&["--prompt=-h"]).unwrap();
        assert_eq!(a.str("prompt"), Some("-h"));
        let a = parse(&["--", "-h"]).unwrap();
        assert_eq!(a.positional, vec!["-h".to_string()]);
    }

    #[test]
    fn a_missing_value_is_named_after_unknown_options() {
        let known = ["prompt", "json"];
        let a = parse(&["-p"]).unwrap();
        assert_eq!(
            a.check_known(&known).err().as_deref(),
            Some("--prompt needs a value")
        );
        let a = parse(&["--json", "--bogus"]).unwrap();
        let err = a.check_known(&known).unwrap_err();
        assert!(err.starts_with("unknown option --bogus"), "{err}");
    }
}
