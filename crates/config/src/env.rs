//! `${VAR}` and `${VAR:-default}` in the pipeline file, replaced from the environment
//! before the YAML is read (comments are left alone).

use std::path::Path;

use crate::error::ConfigError;

/// Replace `${VAR}` and `${VAR:-default}`; an unset variable without default is an error.
pub(crate) fn expand_env(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let re =
        regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}").expect("static regex");
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        // Comments are not expanded: a documented `${VAR}` in a comment is not required.
        let code_end = line.find(" #").map_or(line.len(), |p| p);
        let (code, comment) = if line.trim_start().starts_with('#') {
            ("", line)
        } else {
            line.split_at(code_end)
        };
        let mut err = None;
        let replaced = re.replace_all(code, |c: &regex::Captures<'_>| {
            let var = &c[1];
            match (env(var), c.get(2)) {
                (Some(v), _) => v,
                (None, Some(d)) => d.as_str().to_string(),
                (None, None) => {
                    err.get_or_insert(var.to_string());
                    String::new()
                }
            }
        });
        if let Some(var) = err {
            let key = line.split(':').next().unwrap_or("").trim().to_string();
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: i + 1,
                key,
                message: format!(
                    "environment variable `{var}` is not set (use `${{{var}:-default}}` for a default)"
                ),
            });
        }
        out.push_str(&replaced);
        out.push_str(comment);
    }
    Ok(out)
}
