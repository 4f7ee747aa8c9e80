// The body shared by `fuzz_policy` and the stable-Rust replay in
// `tests/fuzz_replay.rs`: decode arbitrary text as a policy file, as TOML
// and as YAML (`policy::decode`, what `load_policy` runs after reading the
// file), then review a fixed valid profile with every policy that decoded.
// Nothing may panic; every span (of the policy diagnostics and of the
// review findings, related labels included) lies inside its file.

use std::path::{Path, PathBuf};

use ckptctl::diag::{Diagnostic, RenderOptions, render_human};
use ckptctl::policy::{decode, review::review};
use ckptctl::profile::load::{load_str, parse_file};
use ckptctl::source::{Format, SourceMap};

/// The profile every decoded policy reviews: it sets the keys the
/// built-in rules and the usual constraints look at.
pub const PROFILE: &str = r#"version = 1
name = "web"
description = "web tier"
action = "checkpoint"

[target]
pid = 4242

[images]
dir = "/var/lib/ckptctl/web"
work_dir = "/tmp/web-work"
log_level = 2

[process]
tcp_established = true
shell_job = true
file_locks = true
external = ["mnt[/d]:d"]

[cgroups]
mode = "ignore"

[page_server]
address = "10.1.2.3"
port = 2700

[checkpoint]
leave_running = true
ghost_limit = "8MiB"
timeout = "30s"

[criu]
host_config = "inherit"
"#;

fn check(diags: &[Diagnostic], sources: &SourceMap) {
    for d in diags {
        let j = d.to_json(sources);
        assert!(j.code.contains("::"), "{}", j.code);
        let spans = d.span.into_iter().chain(d.related.iter().map(|l| l.span));
        for span in spans {
            let t = &sources.get(span.file).text;
            assert!(
                span.start <= span.end && (span.end as usize) <= t.len(),
                "span {span:?} outside the text"
            );
            assert!(
                t.is_char_boundary(span.start as usize) && t.is_char_boundary(span.end as usize),
                "span {span:?} splits a character"
            );
        }
        let _ = render_human(d, sources, RenderOptions::plain());
    }
}

/// Run one input, in both formats.
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for format in [Format::Toml, Format::Yaml] {
        let (mut sources, loaded) = load_str("profile", PROFILE, Format::Toml);
        let (Some(profile), Some(root)) = (&loaded.profile, loaded.file) else {
            panic!("the fixed profile must load: {:?}", loaded.diags);
        };
        let name = match format {
            Format::Toml => "policy.toml",
            Format::Yaml => "policy.yaml",
        };
        let id = sources.add(PathBuf::from(name), name.to_string(), &*text);
        let tree = match parse_file(id, &sources) {
            Ok(t) => t,
            Err(diags) => {
                check(&diags, &sources);
                continue;
            }
        };
        let mut diags = Vec::new();
        let policy = decode(&tree, id, &mut diags);
        check(&diags, &sources);
        let findings = review(
            profile,
            Path::new("profiles/web.toml"),
            root,
            &policy,
            &sources,
        );
        check(&findings, &sources);
    }
}
