//! SQLite on a full disk: the database lives on a small tmpfs the test mounts, and a filler
//! file takes the rest of it. Writes answer UNAVAILABLE or RESOURCE_EXHAUSTED (never INTERNAL),
//! reads still answer, the server lives on, serves writes again as soon as the filler is gone,
//! loses nothing it had answered, and the file passes `PRAGMA integrity_check`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use courier::proto::PublishRequest;
use tonic::Code;

use crate::harness::*;
use crate::process::{Courier, Launch};

/// The filesystem: room for the schema and some writes, small enough to fill at once.
const DISK_SIZE: &str = "8m";
/// Payload of the writes that meet the full disk: each needs pages of its own.
const BIG_PAYLOAD: usize = 32 * 1024;

/// `PRAGMA integrity_check` on a SQLite file no server has open: "ok" when sound.
pub fn integrity_check(database: &Path) -> String {
    let connection = rusqlite::Connection::open(database).expect("open the SQLite file");
    connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("PRAGMA integrity_check")
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it, or says why not. Skips outside CI when the machine refuses the mount; under
    /// `CI=true` the test must run.
    fn mount_or_skip(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).expect("the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        let refusal = match mounted {
            Ok(output) if output.status.success() => return Some(Self(path.to_owned())),
            Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            Err(error) => error.to_string(),
        };
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("CI=true but a tmpfs cannot be mounted for the full-disk test: {refusal}");
        }
        eprintln!("skipping the full-disk test: cannot mount a tmpfs ({refusal}); run as root");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut filler = std::fs::File::create(path).expect("the filler file");
    let chunk = vec![0u8; 64 * 1024];
    while filler.write_all(&chunk).is_ok() {}
    // The last partial chunk may have left a few bytes.
    while filler.write_all(&[0]).is_ok() {}
}

fn big_publish(key: &str) -> PublishRequest {
    PublishRequest {
        payload: vec![b'x'; BIG_PAYLOAD],
        ..publish_request(PRODUCER, TOPIC, key)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_writes_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let Some(_tmpfs) = Tmpfs::mount_or_skip(&disk, DISK_SIZE) else {
        return;
    };
    let database = disk.join("courier.db");
    let url = format!("sqlite://{}", database.display());
    // The log stays off the full disk.
    let mut server = Courier::start(&Launch::new("full-disk", &url, dir.path())).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut answered = HashSet::new();
    for n in 0..10 {
        let key = format!("before-{n}");
        server
            .producer()
            .publish(big_publish(&key))
            .await
            .expect("Publish");
        answered.insert(key);
    }
    let earlier = server.publish(TOPIC, "earlier").await;
    answered.insert("earlier".to_owned());

    fill(&disk.join("filler"));
    let mut refused = Vec::new();
    for n in 0..200 {
        let key = format!("full-{n}");
        let mut producer = server.producer();
        let publish = producer.publish(big_publish(&key));
        match tokio::time::timeout(Duration::from_secs(5), publish).await {
            Ok(Ok(_)) => {
                answered.insert(key);
            }
            Ok(Err(status)) => {
                assert!(
                    matches!(status.code(), Code::Unavailable | Code::ResourceExhausted),
                    "a write on a full disk answered {:?} {:?}; server log:\n{}",
                    status.code(),
                    status.message(),
                    server.log_tail()
                );
                refused.push(status.code());
                if refused.len() == 5 {
                    break;
                }
            }
            Err(_) => panic!("a write on a full disk had no answer within 5 s"),
        }
    }
    assert!(
        !refused.is_empty(),
        "every write succeeded: the disk never filled up"
    );
    server.assert_running();
    // Reads do not need space.
    assert_eq!(server.status(&earlier).await.message_id, earlier);

    std::fs::remove_file(disk.join("filler")).expect("remove the filler");
    let resumed = eventually(
        Duration::from_secs(15),
        "a write answers OK once space returns",
        || async {
            let key = format!("after-{}", uuid::Uuid::now_v7());
            let published = server.producer().publish(big_publish(&key)).await;
            published.is_ok().then_some(key)
        },
    )
    .await;
    answered.insert(resumed);
    println!(
        "full disk: {} writes refused ({refused:?}), service resumed once space returned",
        refused.len()
    );

    let mut delivered = HashSet::new();
    while !answered.is_subset(&delivered) {
        let deliveries = server.receive(SUB, 100, Duration::from_secs(2)).await;
        assert!(
            !deliveries.is_empty(),
            "answered writes never delivered: {:?}",
            answered.difference(&delivered).collect::<Vec<_>>()
        );
        delivered.extend(deliveries.into_iter().map(|d| d.key));
    }
    server.assert_running();
    server.kill();
    assert_eq!(integrity_check(&database), "ok");
}
