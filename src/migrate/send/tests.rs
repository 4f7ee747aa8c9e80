//! Unit tests of the parent module.

use super::*;
use crate::digest::sha256_hex;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn base64_round_trips_and_matches_rfc4648() {
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64_encode(plain.as_bytes()), enc);
        assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
    }
    let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
    for bad in [
        "Zg=", "Z===", "Zg==Zg==", "Zm9v\n", "Zm-v", "Zh==", "Zm9=Zm9v",
    ] {
        assert!(base64_decode(bad).is_err(), "{bad}");
    }
}

#[test]
fn image_names_are_plain_criu_images() {
    for ok in [
        "inventory.img",
        "core-1.img",
        "tmpfs-dev-63.tar.gz.img",
        "fdinfo-2.img",
    ] {
        assert!(check_image_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "../inventory.img",
        "a/b.img",
        "/etc/passwd",
        "..img",
        "x..y.img",
        ".ckptctl.lock",
        ".hidden.img",
        "ckptctl.complete",
        "stats-dump",
        "dump.log",
        "pages-1.img",
        "pagemap-1.img",
        "core\n.img",
        "a\0.img",
    ] {
        assert!(check_image_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_image_name(&format!("{}.img", "a".repeat(252))).is_err());
}

fn image_msg(name: &str, data: &[u8]) -> Msg {
    Msg::Image {
        name: name.into(),
        size: data.len() as u64,
        sha256: sha256_hex(data),
        offset: 0,
        data: base64_encode(data),
    }
}

#[test]
fn image_message_json_shape() {
    let s = serde_json::to_string(&image_msg("core-1.img", b"ab")).unwrap();
    assert_eq!(
        s,
        format!(
            r#"{{"type":"image","name":"core-1.img","size":2,"sha256":"{}","offset":0,"data":"YWI="}}"#,
            sha256_hex(b"ab")
        )
    );
    let d = Msg::Dumped {
        stats: serde_json::json!({}),
        images: Some(3),
    };
    let s = serde_json::to_string(&d).unwrap();
    assert_eq!(s, r#"{"type":"dumped","stats":{},"images":3}"#);
    assert_eq!(serde_json::from_str::<Msg>(&s).unwrap(), d);
    // Shared images: no count.
    assert_eq!(
        serde_json::from_str::<Msg>(r#"{"type":"dumped","stats":{}}"#).unwrap(),
        Msg::Dumped {
            stats: serde_json::json!({}),
            images: None
        }
    );
}

#[test]
fn images_travel_over_the_control_connection() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    // Left from an earlier run: not sent.
    fs_err::write(src.path().join("core-9.img"), b"old").unwrap();
    let before = snapshot(src.path());
    // Larger than two chunks: it travels in three messages.
    let big: Vec<u8> = (0..(2 * IMAGE_CHUNK as u32 + 300_000))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    fs_err::write(src.path().join("inventory.img"), b"inv").unwrap();
    fs_err::write(src.path().join("mm-1.img"), &big).unwrap();
    fs_err::write(src.path().join("empty.img"), b"").unwrap();
    fs_err::write(src.path().join("pages-1.img"), b"pages").unwrap();
    fs_err::write(src.path().join("ckptctl.incomplete"), b"x").unwrap();
    fs_err::write(src.path().join("dump.log"), b"x").unwrap();
    fs_err::write(src.path().join(".ckptctl.lock"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("link.img")).unwrap();

    let l = super::super::proto::listen("127.0.0.1", 0).unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = dst.path().to_path_buf();
    let t = std::thread::spawn(move || {
        let mut c = super::super::proto::accept(&l, Duration::from_secs(5)).unwrap();
        let mut rx = Received::default();
        loop {
            match c
                .recv_max(
                    Duration::from_secs(5),
                    "dumped",
                    super::super::proto::MAX_IMAGE_LINE,
                )
                .unwrap()
            {
                Msg::Image {
                    name,
                    size,
                    sha256,
                    offset,
                    data,
                } => {
                    assert!(data.len() <= super::super::proto::MAX_IMAGE_LINE);
                    rx.accept(&dir, &name, size, &sha256, offset, &data)
                        .unwrap()
                }
                Msg::Dumped { images, .. } => {
                    rx.finish(&dir, images).unwrap();
                    return rx;
                }
                other => panic!("{other:?}"),
            }
        }
    });
    let mut c = super::super::proto::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    let n = send_images(&mut c, src.path(), &before).unwrap();
    c.send(&Msg::Dumped {
        stats: serde_json::json!({}),
        images: Some(n),
    })
    .unwrap();
    let rx = t.join().unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        rx.names.iter().map(String::as_str).collect::<Vec<_>>(),
        ["empty.img", "inventory.img", "mm-1.img"]
    );
    assert_eq!(fs_err::read(dst.path().join("mm-1.img")).unwrap(), big);
    let mode = fs_err::metadata(dst.path().join("mm-1.img"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let left: Vec<_> = fs_err::read_dir(dst.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
}

#[test]
fn bad_images_are_refused() {
    let dst = tempfile::tempdir().unwrap();
    let empty = |d: &Path| fs_err::read_dir(d).unwrap().count() == 0;
    let sa = sha256_hex(b"a");
    let mut rx = Received::default();
    let e = rx
        .accept(dst.path(), "../x.img", 1, &sa, 0, "YQ==")
        .unwrap_err();
    assert_eq!(e.code, Code::MigrateImageRejected);
    let e = rx
        .accept(dst.path(), "core-1.img", 1, &sha256_hex(b"b"), 0, "YQ==")
        .unwrap_err();
    assert!(e.message.contains("sha256"), "{}", e.message);
    assert!(empty(dst.path()), "a rejected file is not left behind");
    let e = rx
        .accept(dst.path(), "core-1.img", MAX_IMAGE_FILE + 1, &sa, 0, "YQ==")
        .unwrap_err();
    assert_eq!(e.code, Code::MigrateImageRejected);
    let e = rx
        .accept(dst.path(), "core-1.img", 1, &sa, 5, "YQ==")
        .unwrap_err();
    assert!(e.message.contains("offset 5"), "{}", e.message);
    let too_big = "A".repeat(IMAGE_CHUNK.div_ceil(3) * 4 + 4);
    let e = rx
        .accept(dst.path(), "core-1.img", 1, &sa, 0, &too_big)
        .unwrap_err();
    assert!(e.message.contains("chunk larger"), "{}", e.message);
    assert!(empty(dst.path()));
    rx.accept(dst.path(), "core-1.img", 1, &sa, 0, "YQ==")
        .unwrap();
    let e = rx
        .accept(dst.path(), "core-1.img", 1, &sa, 0, "YQ==")
        .unwrap_err();
    assert!(e.message.contains("twice"), "{}", e.message);
    // Count mismatch and missing inventory.
    assert!(rx.finish(dst.path(), Some(2)).is_err());
    assert!(rx.finish(dst.path(), Some(1)).is_err());
    // More bytes than announced.
    let e = rx
        .accept(dst.path(), "mm-1.img", 1, &sha256_hex(b"ab"), 0, "YWI=")
        .unwrap_err();
    assert!(e.message.contains("more than"), "{}", e.message);
    // A failed transfer removes what it wrote, and only that.
    fs_err::write(dst.path().join("dump.log"), b"log").unwrap();
    rx.discard(dst.path());
    let left: Vec<_> = fs_err::read_dir(dst.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["dump.log"]);
    assert!(rx.names.is_empty() && rx.total == 0);
}

#[test]
fn chunks_must_come_in_order_and_complete_their_file() {
    let dst = tempfile::tempdir().unwrap();
    let sum = sha256_hex(b"abcdef");
    let mut rx = Received::default();
    rx.accept(dst.path(), "core-1.img", 6, &sum, 0, &base64_encode(b"abc"))
        .unwrap();
    // Not yet under its own name.
    assert!(!dst.path().join("core-1.img").exists());
    let e = rx
        .accept(dst.path(), "core-1.img", 6, &sum, 4, &base64_encode(b"ef"))
        .unwrap_err();
    assert!(
        e.message.contains("expected core-1.img at offset 3"),
        "{}",
        e.message
    );
    let e = rx
        .accept(dst.path(), "mm-1.img", 1, &sum, 0, "YQ==")
        .unwrap_err();
    assert!(e.message.contains("expected core-1.img"), "{}", e.message);
    let e = rx.finish(dst.path(), Some(0)).unwrap_err();
    assert!(e.message.contains("3 of 6 bytes"), "{}", e.message);
    rx.accept(dst.path(), "core-1.img", 6, &sum, 3, &base64_encode(b"def"))
        .unwrap();
    assert_eq!(
        fs_err::read(dst.path().join("core-1.img")).unwrap(),
        b"abcdef"
    );
    // The digest's case does not matter, from chunk to chunk.
    let upper = sha256_hex(b"xyz").to_ascii_uppercase();
    rx.accept(dst.path(), "fs-1.img", 3, &upper, 0, &base64_encode(b"xy"))
        .unwrap();
    rx.accept(
        dst.path(),
        "fs-1.img",
        3,
        &sha256_hex(b"xyz"),
        2,
        &base64_encode(b"z"),
    )
    .unwrap();
    assert!(
        rx.accept(dst.path(), "x-1.img", 1, "nothex", 0, "YQ==")
            .unwrap_err()
            .message
            .contains("not a sha256")
    );
    // An empty file is one chunk with no data.
    rx.accept(dst.path(), "empty.img", 0, &sha256_hex(b""), 0, "")
        .unwrap();
    assert_eq!(rx.names.len(), 3);
}
