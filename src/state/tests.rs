use std::fs::OpenOptions;

use super::*;

#[test]
fn second_lock_fails_fast_and_release_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let first = StateDirLock::acquire(dir.path()).unwrap();
    let second = StateDirLock::acquire(dir.path());
    assert!(matches!(second, Err(StateError::Locked { .. })));
    drop(first);
    assert!(StateDirLock::acquire(dir.path()).is_ok());
}

#[test]
fn trees_scan_in_key_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let tree = store.tree("spool:a").unwrap();
        for i in [3u64, 1, 2, 10] {
            tree.insert(&i.to_be_bytes(), format!("v{i}").as_bytes())
                .unwrap();
        }
        tree.remove(&2u64.to_be_bytes()).unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let tree = store.tree("spool:a").unwrap();
    let all = tree.scan_after(None, 10).unwrap();
    let keys: Vec<u64> = all
        .iter()
        .map(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().unwrap()))
        .collect();
    assert_eq!(keys, [1, 3, 10]);
    let after = tree.scan_after(Some(&3u64.to_be_bytes()), 10).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, b"v10");
    assert_eq!(tree.last().unwrap().unwrap().1, b"v10");
    assert!(store.tree_names().contains(&"spool:a".to_string()));
}

#[test]
fn a_damaged_store_is_an_error_naming_the_way_out_never_a_panic() {
    use std::io::{Seek, SeekFrom};
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let tree = store.tree("spool:a").unwrap();
        for i in 0u64..5000 {
            tree.insert(&i.to_be_bytes(), &[7u8; 100]).unwrap();
        }
        store.flush().unwrap();
        store.record_identity().unwrap();
    }
    let db = dir.path().join("ferry.db/db");
    let len = std::fs::metadata(&db).unwrap().len();
    let mut file = OpenOptions::new().write(true).open(&db).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        file.seek(SeekFrom::Start(x % len)).unwrap();
        file.write_all(&x.to_le_bytes().repeat(8)).unwrap();
    }
    drop(file);
    let error = match SledStore::open(dir.path()) {
        Err(error) => error,
        Ok(_) => panic!("a store with 20 x 64 random bytes in it opened"),
    };
    assert!(error.is_damage(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&dir.path().join("ferry.db").display().to_string()),
        "{text}"
    );
    assert!(text.contains("--recover-state"), "{text}");

    let moved = SledStore::move_aside(dir.path()).unwrap();
    assert!(moved
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("ferry.db.damaged-"));
    assert!(moved.join("db").exists());
    let store = SledStore::open(dir.path()).unwrap();
    assert!(matches!(store.history(), StoreHistory::Replaced { .. }));
    assert!(store.tree("spool:a").unwrap().last().unwrap().is_none());
}

#[test]
fn a_lost_store_is_told_apart_from_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let identity = {
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.history(), StoreHistory::New);
        store.record_identity().unwrap();
        store.identity()
    };
    {
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.history(), StoreHistory::Continued);
        assert_eq!(store.identity(), identity);
        assert!(!store.tree_names().contains(&META_TREE.to_string()));
    }
    std::fs::remove_dir_all(dir.path().join("ferry.db")).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.history(),
        StoreHistory::Replaced { previous: identity }
    );
    assert_ne!(store.identity(), identity);
}

#[test]
fn a_store_that_lost_completed_writes_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.record_identity().unwrap();
        for i in 0u64..3 {
            store
                .tree("t")
                .unwrap()
                .insert(&i.to_be_bytes(), b"v")
                .unwrap();
            store.flush().unwrap();
        }
    }
    assert_eq!(Marker::read(dir.path()).unwrap().flushes, 3);
    // The store reopens fine while it holds what the directory recorded...
    drop(SledStore::open(dir.path()).unwrap());
    // ...but not once it holds less (as after sled dropped the end of a damaged log).
    let mut marker = Marker::read(dir.path()).unwrap();
    marker.flushes += 1;
    marker.write(dir.path()).unwrap();
    let error = SledStore::open(dir.path()).err().expect("damage");
    assert!(error.is_damage(), "{error}");
    assert!(error.to_string().contains("lost writes"), "{error}");
}
