//! YAML 1.2 core schema resolution of plain scalars (`true`, `0x10`,
//! `.inf`, `~`): what a plain scalar means when no tag says otherwise.

use crate::profile::node::Kind;

/// YAML 1.2 core schema resolution of a plain scalar.
pub(super) fn plain_scalar(v: &str) -> Kind {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = v.strip_prefix("0x") {
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return i64::from_str_radix(hex, 16).map_or(Kind::Float(f64::INFINITY), Kind::Int);
        }
    }
    if let Some(oct) = v.strip_prefix("0o") {
        if !oct.is_empty() && oct.chars().all(|c| ('0'..='7').contains(&c)) {
            return i64::from_str_radix(oct, 8).map_or(Kind::Float(f64::INFINITY), Kind::Int);
        }
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return v.parse::<i64>().map_or(
            Kind::Float(if v.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }),
            Kind::Int,
        );
    }
    if is_yaml_float(digits) {
        if let Ok(f) = v.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(v.to_string())
}

fn is_yaml_float(s: &str) -> bool {
    // [0-9]* ( . [0-9]* )? ( [eE] [-+]? [0-9]+ )?  with at least one digit
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = mant.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let ok_mant = int.chars().all(|c| c.is_ascii_digit())
        && frac.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit()))
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()))
        && (frac.is_some() || exp.is_some());
    let ok_exp = exp.is_none_or(|e| {
        let d = e.strip_prefix(['-', '+']).unwrap_or(e);
        !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
    });
    ok_mant && ok_exp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_follow_the_core_schema() {
        assert_eq!(plain_scalar("yes"), Kind::Str("yes".into()));
        assert_eq!(plain_scalar("true"), Kind::Bool(true));
        assert_eq!(plain_scalar("0x10"), Kind::Int(16));
        assert_eq!(plain_scalar("-3"), Kind::Int(-3));
        assert_eq!(plain_scalar("0.5"), Kind::Float(0.5));
        assert_eq!(plain_scalar("1e3"), Kind::Float(1000.0));
        assert_eq!(plain_scalar("1.2.3"), Kind::Str("1.2.3".into()));
        assert_eq!(plain_scalar("~"), Kind::Null);
    }
}
