//! `apply --resolve`: the usage errors, and what it refuses to touch. The
//! real resolutions (commit, abort) run against the real CRIU in
//! `migrate_netns`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{ckptctl, code, tmp, write};

const MIGRATE: &str = "version = 1\nname = \"m\"\naction = \"migrate\"\n[images]\ndir = \"images\"\n[migration]\ndestination = \"127.0.0.1\"\ncontrol_port = 27499\n";

fn migrate_profile(dir: &Path) -> String {
    write(dir, "m.toml", MIGRATE).display().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn resolve_is_refused_outside_a_migration_role() {
    let d = tmp();
    let ck = write(
        d.path(),
        "c.toml",
        "version = 1\nname = \"c\"\naction = \"checkpoint\"\n[images]\ndir = \"images\"\n[target]\npid = 1\n",
    );
    let ck = ck.display().to_string();
    let m = migrate_profile(d.path());
    for (args, want) in [
        (vec!["apply", &ck, "--resolve"], "not a migrate profile"),
        (vec!["apply", &m, "--resolve"], "needs `--role destination`"),
        (
            vec![
                "apply",
                &m,
                "--role",
                "source",
                "--resolve",
                "--decision",
                "commit",
            ],
            "use it with `--role destination --resolve`",
        ),
        (
            vec![
                "apply",
                &m,
                "--role",
                "destination",
                "--resolve",
                "--pid",
                "1",
            ],
            "never from `--pid`",
        ),
        (
            vec!["apply", &m, "--role", "destination", "--decision", "abort"],
            "--resolve",
        ),
        (
            vec![
                "apply",
                &m,
                "--role",
                "destination",
                "--resolve",
                "--dry-run",
            ],
            "--dry-run",
        ),
    ] {
        let o = ckptctl(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

/// A stopped process named in `ckptctl.stopped`, and what `--resolve`
/// will not do to it.
#[test]
fn resolve_never_guesses_and_never_touches_a_reused_pid() {
    let d = tmp();
    let m = migrate_profile(d.path());
    let images = d.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let resolve = ["apply", &m, "--role", "destination", "--resolve"];

    // Nothing left here: nothing to resolve.
    let o = ckptctl(&resolve);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to resolve"), "{}", stderr(&o));

    let mut sleeper = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sleeper.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let state = || {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        s.rsplit_once(')').unwrap().1.trim_start().chars().next()
    };
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || state() == Some('T')
    ));

    // No decision file, no --decision: refused, named, nothing changed.
    write(
        &images,
        "ckptctl.stopped",
        &format!("{{\"pid\": {pid}, \"start_time\": 1}}"),
    );
    let o = ckptctl(&resolve);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("migrate::resolve-undecided"), "{e}");
    assert!(
        e.contains("ckptctl.decision") && e.contains("--decision"),
        "{e}"
    );
    assert_eq!(state(), Some('T'));
    assert!(images.join("ckptctl.stopped").exists());

    // The pid names a process with another start time: never resumed.
    let mut args = resolve.to_vec();
    args.extend(["--decision", "commit"]);
    let o = ckptctl(&args);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("migrate::resolve-gone"),
        "{}",
        stderr(&o)
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(state(), Some('T'), "a reused pid was resumed");
    assert!(images.join("ckptctl.stopped").exists());

    // Without a start time (an older ckptctl's file) it cannot be told
    // from a reused pid: not even abort kills it.
    write(&images, "ckptctl.stopped", &format!("{{\"pid\": {pid}}}"));
    let mut args = resolve.to_vec();
    args.extend(["--decision", "abort"]);
    let o = ckptctl(&args);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("without its start time"),
        "{}",
        stderr(&o)
    );
    assert_eq!(state(), Some('T'), "a pid without start time was killed");

    let _ = sleeper.kill();
    let _ = sleeper.wait();
}
