//! Generated scenarios: a template expanded over the product of named axes, with rules deciding what each
//! combination expects. Variables are written `${name}`; an axis name is itself a variable holding the
//! variant's name. A string that is exactly `${name}` takes the variable's TOML value (a table, a list...),
//! so rules can set whole outcomes.
//!
//! ```toml
//! [[matrix]]
//! [matrix.template]
//! id = "matrix/${sni}/${host}"
//! ...
//! [[matrix.axis]]
//! name = "sni"
//! variants = [ { name = "proxy-name", vars = { sni = "proxy-name" } }, ... ]
//! [[matrix.rule]]
//! when = { host = ["absent"] }
//! vars = { status = "400" }
//! ```

use std::collections::BTreeMap;

use globset::Glob;
use serde::Deserialize;
use toml::{Table, Value};

/// One `[[matrix]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// Scenario fields with `${var}` placeholders.
    pub template: Table,
    #[serde(rename = "axis")]
    pub axes: Vec<Axis>,
    /// Applied in order to every combination whose `when` matches; later rules override earlier ones.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    /// Variables common to every combination (rules and variants override them).
    #[serde(default)]
    pub vars: Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    pub name: String,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub vars: Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Axis name → variant-name globs (a string or a list); every listed axis must match.
    #[serde(default)]
    pub when: BTreeMap<String, Value>,
    #[serde(default)]
    pub vars: Table,
    /// Drop the matching combinations.
    #[serde(default)]
    pub exclude: bool,
}

/// One expanded combination: its variant names (for error messages) and the substituted scenario table.
pub struct Expanded {
    pub label: String,
    pub table: Table,
}

impl Matrix {
    /// Expands every combination; errors name the combination and the offending variable.
    pub fn expand(&self) -> Result<Vec<Expanded>, String> {
        if self.axes.is_empty() || self.axes.iter().any(|a| a.variants.is_empty()) {
            return Err("a matrix needs at least one axis, and every axis at least one variant".into());
        }
        let mut matchers = Vec::new();
        for (ri, rule) in self.rules.iter().enumerate() {
            let mut conds = Vec::new();
            for (axis, pats) in &rule.when {
                if !self.axes.iter().any(|a| &a.name == axis) {
                    return Err(format!("rule[{ri}].when names unknown axis {axis:?}"));
                }
                let list: Vec<&str> = match pats {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
                    _ => return Err(format!("rule[{ri}].when.{axis}: expected a glob or a list of globs")),
                };
                let mut set = globset::GlobSetBuilder::new();
                for p in list {
                    set.add(Glob::new(p).map_err(|e| format!("rule[{ri}].when.{axis}: {e}"))?);
                }
                conds.push((axis.clone(), set.build().map_err(|e| e.to_string())?));
            }
            matchers.push(conds);
        }
        let mut out = Vec::new();
        let mut idx = vec![0usize; self.axes.len()];
        loop {
            let mut vars = self.vars.clone();
            let mut names = Vec::new();
            for (a, &i) in self.axes.iter().zip(&idx) {
                let v = &a.variants[i];
                vars.insert(a.name.clone(), Value::String(v.name.clone()));
                vars.extend(v.vars.clone());
                names.push(format!("{}={}", a.name, v.name));
            }
            let mut excluded = false;
            for (rule, conds) in self.rules.iter().zip(&matchers) {
                let hit = conds.iter().all(|(axis, set)| {
                    let ai = self.axes.iter().position(|a| &a.name == axis).expect("checked axis");
                    set.is_match(&self.axes[ai].variants[idx[ai]].name)
                });
                if hit {
                    excluded |= rule.exclude;
                    vars.extend(rule.vars.clone());
                }
            }
            let label = names.join(", ");
            if !excluded {
                let table = subst_table(&self.template, &vars).map_err(|e| format!("combination [{label}]: {e}"))?;
                out.push(Expanded { label, table });
            }
            // Odometer increment over the axes.
            let mut k = self.axes.len();
            loop {
                if k == 0 {
                    return Ok(out);
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < self.axes[k].variants.len() {
                    break;
                }
                idx[k] = 0;
            }
        }
    }
}

fn subst_table(t: &Table, vars: &Table) -> Result<Table, String> {
    t.iter().map(|(k, v)| Ok((k.clone(), subst(v, vars)?))).collect()
}

fn subst(v: &Value, vars: &Table) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
                && !name.contains(['{', '}', '$'])
            {
                let val = vars.get(name).ok_or_else(|| format!("unknown variable ${{{name}}}"))?;
                // A variable may itself hold `${...}` references.
                return subst(val, vars);
            }
            Value::String(interpolate(s, vars, 0)?)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| subst(x, vars)).collect::<Result<_, _>>()?),
        Value::Table(t) => Value::Table(subst_table(t, vars)?),
        other => other.clone(),
    })
}

fn interpolate(s: &str, vars: &Table, depth: usize) -> Result<String, String> {
    if depth > 8 {
        return Err("variables nest too deeply".into());
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let name = &rest[i + 2..i + end];
        let val = vars.get(name).ok_or_else(|| format!("unknown variable ${{{name}}}"))?;
        match val {
            Value::String(x) => out.push_str(&interpolate(x, vars, depth + 1)?),
            Value::Integer(n) => out.push_str(&n.to_string()),
            Value::Boolean(b) => out.push_str(&b.to_string()),
            _ => {
                return Err(format!("variable ${{{name}}} is not text, so it cannot be part of {s:?}"));
            }
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_product_with_rules() {
        let m: Matrix = toml::from_str(
            r#"
            vars = { status = "2xx" }
            [template]
            id = "m/${a}/${b}"
            status = "${status}"
            nested = ["x${b}y"]
            [[axis]]
            name = "a"
            variants = [{ name = "one" }, { name = "two", vars = { n = 2 } }]
            [[axis]]
            name = "b"
            variants = [{ name = "p" }, { name = "q" }]
            [[rule]]
            when = { b = "q" }
            vars = { status = ["400", "4xx"] }
            [[rule]]
            when = { a = "two", b = "p" }
            exclude = true
            "#,
        )
        .unwrap();
        let e = m.expand().unwrap();
        let ids: Vec<_> = e.iter().map(|x| x.table["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, ["m/one/p", "m/one/q", "m/two/q"]);
        assert_eq!(e[0].table["status"].as_str(), Some("2xx"));
        assert!(e[1].table["status"].is_array());
        assert_eq!(e[1].table["nested"][0].as_str(), Some("xqy"));
    }

    #[test]
    fn unknown_variable_names_the_combination() {
        let m: Matrix = toml::from_str(
            r#"
            [template]
            id = "${nope}"
            [[axis]]
            name = "a"
            variants = [{ name = "one" }]
            "#,
        )
        .unwrap();
        let err = m.expand().err().unwrap();
        assert!(err.contains("a=one") && err.contains("${nope}"), "{err}");
    }
}
