//! Snapshots of the human rendering (miette, colour off, 80 columns) for the
//! representative shapes: unknown key with help, a two-key rule with a second
//! label, a label in another file (`extends`), syntax errors in both
//! formats, a YAML rule, a missing key at a header, a warning, a cycle.
//!
//! Each is compared with `tests/golden/human/<test>.txt`; update with
//! `CKPTCTL_UPDATE_GOLDEN=1 cargo test --test profile_render`, then read the
//! diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::PathBuf;

use ckptctl::diag::{RenderOptions, render_human};
use ckptctl::profile::{LoadOptions, load};
use ckptctl::source::SourceMap;

fn render(case: &str) -> String {
    // Paths relative to the package root, as cargo runs tests there, so the
    // names in the reports (and of `extends` bases) are stable.
    let rel = format!("tests/cases/{case}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&rel);
    let mut sources = SourceMap::new();
    let l = load(&path, &rel, &mut sources, LoadOptions::default());
    assert!(!l.diags.is_empty(), "{case} has no diagnostics");
    l.diags
        .iter()
        .map(|d| render_human(d, &sources, RenderOptions::plain()))
        .collect::<Vec<_>>()
        .join("\n")
}

macro_rules! snap {
    ($name:ident, $case:literal) => {
        #[test]
        fn $name() {
            common::golden("human", concat!(stringify!($name), ".txt"), &render($case));
        }
    };
}

snap!(unknown_key_with_help, "unknown-key-process.toml");
snap!(unknown_key_misplaced, "unknown-key-misplaced.yaml");
snap!(unknown_variant_lists_values, "enum-network-lock.toml");
snap!(two_key_rule_labels_both, "rule-target-pid-pidfile.toml");
snap!(yaml_rule_with_second_label, "rule-veth-empty-net.yaml");
snap!(
    related_label_in_base_file,
    "extends-two-key-rule/profile.toml"
);
snap!(error_inside_base_file, "extends-error-in-base/profile.yaml");
snap!(extends_cycle, "extends-cycle/a.toml");
snap!(toml_syntax_error, "syntax-unclosed-string.toml");
snap!(yaml_syntax_error, "syntax-bad-indent.yaml");
snap!(missing_key_at_header, "missing-migration-keys.toml");
snap!(warning_and_errors_together, "many-problems.yaml");

#[test]
fn plain_rendering_has_no_ansi_escapes() {
    for case in [
        "many-problems.toml",
        "many-problems.yaml",
        "extends-two-key-rule/profile.toml",
    ] {
        assert!(!render(case).contains('\u{1b}'), "{case}");
    }
}
