//! `ckptctl diff`: REV:PATH in a temporary git repository (with `extends`
//! resolved at the revision), golden outputs, formatting-only changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

fn repo() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    git(d, &["init", "-q"]);
    git(d, &["config", "user.email", "t@example.org"]);
    git(d, &["config", "user.name", "t"]);
    std::fs::create_dir(d.join("profiles")).unwrap();
    std::fs::write(
        d.join("profiles/base.toml"),
        "version = 1\nname = \"base\"\naction = \"checkpoint\"\n[images]\ndir = \"/var/lib/ckptctl/web\"\n[cgroups]\nmode = \"soft\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("profiles/web.toml"),
        "extends = \"base.toml\"\nname = \"web\"\n[target]\npid = 5\n",
    )
    .unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "one"]);
    tmp
}

fn ckptctl(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn golden(name: &str, actual: &str) {
    common::golden("diff", name, actual);
}

#[test]
fn rev_path_diff_with_extends_at_the_revision() {
    let r = repo();
    let d = r.path();
    // Change the base (inherited key) and the profile itself.
    std::fs::write(
        d.join("profiles/base.toml"),
        "version = 1\nname = \"base\"\naction = \"checkpoint\"\n[images]\ndir = \"/var/lib/ckptctl/web\"\n[cgroups]\nmode = \"ignore\"\n",
    )
    .unwrap();
    std::fs::write(d.join("profiles/web.toml"), "extends = \"base.toml\"\nname = \"web\"\n[target]\npid = 5\n[process]\ntcp_established = true\n").unwrap();
    let args = ["diff", "HEAD:profiles/web.toml", "profiles/web.toml"];
    let (code, human) = ckptctl(d, &args);
    assert_eq!(code, 0);
    assert!(
        human.contains("cgroups.mode soft → ignore (--manage-cgroups=ignore)"),
        "{human}"
    );
    golden("web.human.txt", &human);
    let (_, json) = ckptctl(
        d,
        &[
            "--output",
            "json",
            "diff",
            "HEAD:profiles/web.toml",
            "profiles/web.toml",
        ],
    );
    golden("web.json", &json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tcp = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "process.tcp_established")
        .unwrap();
    assert_eq!(tcp["findings"][0]["code"], "policy::tcp-established");
    assert_eq!(tcp["findings"][0]["line"], 6);
    let (_, md) = ckptctl(
        d,
        &[
            "--output",
            "markdown",
            "diff",
            "HEAD:profiles/web.toml",
            "profiles/web.toml",
        ],
    );
    golden("web.md", &md);
    let (code, _) = ckptctl(
        d,
        &[
            "diff",
            "--exit-code",
            "HEAD:profiles/web.toml",
            "profiles/web.toml",
        ],
    );
    assert_eq!(code, 1, "--exit-code with a change");
    // From a subfolder, REV:PATH is relative to it, like the path.
    let (code, out) = ckptctl(
        &d.join("profiles"),
        &["diff", "--exit-code", "HEAD:web.toml", "HEAD:web.toml"],
    );
    assert_eq!((code, out.contains("no change")), (0, true), "{out}");
}

#[test]
fn formatting_only_changes_are_no_change() {
    let r = repo();
    let d = r.path();
    // Reordered, commented, requoted, and the inherited value written out.
    std::fs::write(
        d.join("profiles/web.toml"),
        "# the web tier\nname = 'web'\nextends = \"./base.toml\"\n\n[target]\npid = 5  # from the pidfile later\n[cgroups]\nmode = \"soft\"\n",
    )
    .unwrap();
    let (code, out) = ckptctl(
        d,
        &[
            "diff",
            "--exit-code",
            "HEAD:profiles/web.toml",
            "profiles/web.toml",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no change"), "{out}");
    // The same profile in YAML.
    std::fs::write(
        d.join("web.yaml"),
        "version: 1\nname: web\naction: checkpoint\nimages: {dir: /var/lib/ckptctl/web}\ntarget:\n  pid: 5\n",
    )
    .unwrap();
    let (code, out) = ckptctl(
        d,
        &["diff", "--exit-code", "HEAD:profiles/web.toml", "web.yaml"],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn unknown_revision_is_a_usage_error() {
    let r = repo();
    let (code, _) = ckptctl(
        r.path(),
        &["diff", "nosuchrev:profiles/web.toml", "profiles/web.toml"],
    );
    assert_eq!(code, 2);
}

#[test]
fn relative_paths_in_a_profile_resolve_alike_on_both_sides() {
    let r = repo();
    let d = r.path();
    // A relative images.dir: the git side and the file side must agree.
    std::fs::write(
        d.join("profiles/rel.toml"),
        "version = 1\nname = \"rel\"\naction = \"checkpoint\"\n[images]\ndir = \"imgs\"\n",
    )
    .unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "rel"]);
    let (code, out) = ckptctl(
        d,
        &[
            "diff",
            "--exit-code",
            "HEAD:profiles/rel.toml",
            "profiles/rel.toml",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let abs = d.join("profiles/rel.toml");
    let (code, out) = ckptctl(
        d,
        &[
            "diff",
            "--exit-code",
            "profiles/rel.toml",
            abs.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_revision_is_never_passed_to_git_as_an_option() {
    let r = repo();
    let d = r.path();
    // Before the fix this made `git show --output=...` write a file.
    let spec = format!("--output={}/injected:web.toml", d.display());
    let (code, _) = ckptctl(d, &["diff", "--", &spec, "profiles/web.toml"]);
    assert_eq!(code, 2);
    assert!(
        !d.join("injected:web.toml").exists(),
        "git wrote a file named by the revision"
    );
}

#[test]
fn sarif_of_a_diff_carries_the_findings_the_change_brings() {
    let r = repo();
    let d = r.path();
    // tcp_established turned on in the working tree.
    std::fs::write(
        d.join("profiles/web.toml"),
        "extends = \"base.toml\"\nname = \"web\"\n[target]\npid = 5\n[process]\ntcp_established = true\n",
    )
    .unwrap();
    let (code, out) = ckptctl(
        d,
        &[
            "--output",
            "sarif",
            "diff",
            "HEAD:profiles/web.toml",
            "profiles/web.toml",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let rules: Vec<&str> = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["policy::tcp-established"], "{out}");
}

#[test]
fn a_base_missing_at_the_revision_is_not_read_from_the_working_tree() {
    let r = repo();
    let d = r.path();
    std::fs::write(
        d.join("profiles/child.toml"),
        "extends = \"newbase.toml\"\nname = \"child\"\n[target]\npid = 5\n",
    )
    .unwrap();
    git(d, &["add", "profiles/child.toml"]);
    git(d, &["commit", "-qm", "child without its base"]);
    // The base exists only on disk.
    std::fs::copy(
        d.join("profiles/base.toml"),
        d.join("profiles/newbase.toml"),
    )
    .unwrap();
    let (code, _) = ckptctl(
        d,
        &["diff", "HEAD:profiles/child.toml", "profiles/child.toml"],
    );
    assert_eq!(code, 2, "the revision's base does not exist there");
}

/// REV:PATH resolves against the repository that holds PATH, wherever the
/// command runs; outside any repository the message says which one it needs
/// (and not also that the profiles are invalid).
#[test]
fn rev_path_is_read_from_the_repository_that_holds_it() {
    let r = repo();
    let outside = tempfile::tempdir().unwrap();
    let web = r.path().join("profiles/web.toml");
    let web = web.to_str().unwrap();
    let (code, out) = ckptctl(
        outside.path(),
        &["--output", "json", "diff", &format!("HEAD:{web}"), web],
    );
    assert_eq!(code, 0, "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .current_dir(outside.path())
        .env("COLUMNS", "400")
        .args(["--color", "never", "diff", "HEAD:nothere/web.toml", web])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not inside a git repository"), "{err}");
    assert!(!err.contains("cannot diff invalid profiles"), "{err}");
    assert!(!err.contains("fatal:"), "git's own message: {err}");
}

/// A file at REV larger than a profile may be is refused from what git
/// printed, bounded, never read whole.
#[test]
fn a_revision_larger_than_a_profile_is_refused() {
    let r = repo();
    let big = r.path().join("profiles/big.toml");
    let mut text = String::from("version = 1\nname = \"big\"\naction = \"checkpoint\"\n");
    while text.len() <= 1 << 20 {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, &text).unwrap();
    git(r.path(), &["add", "."]);
    git(r.path(), &["commit", "-qm", "big"]);
    let web = r.path().join("profiles/web.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .current_dir(r.path())
        .env("COLUMNS", "400")
        .args(["--color", "never", "diff", "HEAD:profiles/big.toml"])
        .arg(&web)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("larger than 1024 KiB"), "{err}");
}
