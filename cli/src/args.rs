//! A small command-line parser: `-x VALUE`, `--long VALUE`, `--long=VALUE`,
//! flags, and positional arguments, with errors that name the argument.

use std::collections::HashMap;
use std::str::FromStr;

pub struct Args {
    values: HashMap<String, Vec<String>>,
    flags: Vec<String>,
    pub positional: Vec<String>,
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
            let key = name.trim_start_matches('-').to_string();
            if flag_names.contains(&key.as_str()) {
                a.flags.push(key);
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
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

    /// Names given that are not in `known` (to reject typos).
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for k in self.values.keys().chain(self.flags.iter()) {
            if !known.contains(&k.as_str()) {
                return Err(format!("unknown option --{k}"));
            }
        }
        Ok(())
    }
}
