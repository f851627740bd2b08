//! The house rules check (`scripts/house.py`, run by `scripts/test.sh`): it passes on this
//! tree, and it fails on trees that break each rule — a cycle, an upward import, a cross-area
//! path into another area's inner file, rooms reaching federation outside its port, and a
//! migration that drops a column.

use std::{fs, path::Path, process::Command};

fn check(root: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/house.py"))
        .arg("--root")
        .arg(root)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        (
            "src/lib.rs",
            "pub mod api;\npub mod services;\npub mod store;\n",
        ),
        ("src/api/mod.rs", "use crate::services::Services;\n"),
        ("src/store/mod.rs", "pub struct Db;\n"),
        (
            "src/services/mod.rs",
            "pub mod federation;\npub mod rooms;\npub struct Services;\n",
        ),
        (
            "src/services/rooms/mod.rs",
            "pub mod federation_port;\npub mod send;\npub mod pdu;\n",
        ),
        ("src/services/rooms/pdu.rs", "pub struct Pdu;\n"),
        (
            "src/services/rooms/federation_port.rs",
            "fn f(s: &crate::services::Services) { s.federation().enqueue(); }\n",
        ),
        ("src/services/rooms/send.rs", "use super::pdu::Pdu;\n"),
        (
            "src/services/federation/mod.rs",
            "pub mod sender;\npub use sender::Queue;\n",
        ),
        (
            "src/services/federation/sender.rs",
            "use crate::services::rooms::pdu::Pdu;\npub struct Queue;\n",
        ),
    ];
    for (path, text) in base.iter().chain(files) {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn this_tree_keeps_the_rules() {
    let (ok, errors) = check(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(ok, "scripts/house.py refuses this tree:\n{errors}");
}

#[test]
fn a_fixture_that_keeps_the_rules_passes() {
    let dir = tree(&[]);
    let (ok, errors) = check(dir.path());
    assert!(ok, "{errors}");
}

#[test]
fn a_migration_that_drops_is_refused() {
    let dir = tree(&[(
        "migrations/postgres/0099_tidy.sql",
        "-- drops what the last release stopped using\nALTER TABLE rooms DROP COLUMN creator;\n",
    )]);
    let (ok, errors) = check(dir.path());
    assert!(!ok);
    assert!(errors.contains("0099_tidy.sql"), "{errors}");
    let dir = tree(&[(
        "migrations/postgres/0099_tidy_contract.sql",
        "ALTER TABLE rooms DROP COLUMN creator;\n",
    )]);
    let (ok, errors) = check(dir.path());
    assert!(ok, "{errors}");
}

#[test]
fn a_cycle_is_refused() {
    let dir = tree(&[(
        "src/services/rooms/pdu.rs",
        "use crate::services::federation::Queue;\npub struct Pdu;\n",
    )]);
    let (ok, errors) = check(dir.path());
    assert!(!ok);
    assert!(errors.contains("import cycle"), "{errors}");
    assert!(errors.contains("services/rooms/pdu"), "{errors}");
}

#[test]
fn an_upward_import_is_refused() {
    let dir = tree(&[("src/store/mod.rs", "use crate::services::Services;\n")]);
    let (ok, errors) = check(dir.path());
    assert!(!ok);
    assert!(
        errors.contains("upward import: store names services"),
        "{errors}"
    );
}

#[test]
fn a_path_into_another_areas_inner_file_is_refused() {
    let dir = tree(&[(
        "src/services/rooms/send.rs",
        "use crate::services::federation::sender::Queue;\n",
    )]);
    let (ok, errors) = check(dir.path());
    assert!(!ok);
    assert!(
        errors.contains(
            "cross-area private path: services/rooms/send names services/federation/sender"
        ),
        "{errors}"
    );
}

#[test]
fn rooms_reaching_federation_outside_its_port_is_refused() {
    let dir = tree(&[(
        "src/services/rooms/send.rs",
        "fn f(s: &crate::services::Services) { s.federation().enqueue(); }\n",
    )]);
    let (ok, errors) = check(dir.path());
    assert!(!ok);
    assert!(
        errors.contains("services/rooms/send reaches federation outside its port"),
        "{errors}"
    );
}
