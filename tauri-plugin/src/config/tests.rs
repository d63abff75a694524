//! Resolution of the plugin config into a launch spec.

use super::*;
use serde_json::json;

fn paths_in(
    dir: &Path,
) -> (
    impl Fn() -> Result<PathBuf> + '_,
    impl Fn() -> Result<PathBuf>,
) {
    (
        move || Ok(dir.join("appdata")),
        || Ok(PathBuf::from("/opt/app/bin")),
    )
}

fn no_resource_dir() -> Result<PathBuf> {
    Err(Error::Config("no resource dir in this test".into()))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sync-queue-config-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn defaults_run_the_bundled_sidecar_on_the_app_data_dir() {
    let dir = tmp("defaults");
    let (data, exe) = paths_in(&dir);
    let spec = resolve(
        None,
        &Overrides::default(),
        &AppPaths {
            app_data_dir: &data,
            exe_dir: &exe,
            resource_dir: &no_resource_dir,
        },
    )
    .unwrap();
    assert_eq!(
        spec.program,
        external_bin_path(Path::new("/opt/app/bin"), "sync-queue-sidecar")
    );
    let data_dir = dir.join("appdata").join("sync-queue");
    assert_eq!(
        spec.args,
        vec![OsString::from("--data-dir"), data_dir.clone().into()]
    );
    assert!(data_dir.is_dir());
    assert_eq!(spec.timing, Timing::default());
    assert!(spec.queue_config.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_file_shape() {
    let config: Config = serde_json::from_value(json!({
        "sidecar": {"command": ["python", "-m", "sync_queue"]},
        "cwd": "/src", "env": {"A": "1"}, "memory": true,
        "queue": {"max_capacity": 5}, "keyFile": "/k", "callTimeoutMs": 10
    }))
    .unwrap();
    let (data, exe) = paths_in(Path::new("/nonexistent"));
    let spec = resolve(
        Some(&config),
        &Overrides::default(),
        &AppPaths {
            app_data_dir: &data,
            exe_dir: &exe,
            resource_dir: &no_resource_dir,
        },
    )
    .unwrap();
    assert_eq!(spec.program, PathBuf::from("python"));
    let args: Vec<_> = spec.args.iter().map(|a| a.to_str().unwrap()).collect();
    assert_eq!(args, ["-m", "sync_queue", "--memory", "--key-file", "/k"]);
    assert_eq!(spec.cwd, Some(PathBuf::from("/src")));
    assert!(spec.env.contains(&("A".into(), "1".into())));
    assert_eq!(
        spec.queue_config,
        Some(json!({"max_capacity": 5}).as_object().unwrap().clone())
    );
    assert_eq!(spec.timing.call_timeout, Duration::from_millis(10));

    let err = serde_json::from_value::<Config>(json!({"timeout": 1})).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn the_outbox_section_takes_its_fields_and_defaults_the_rest() {
    let config: Config =
        serde_json::from_value(json!({"outbox": {"concurrency": 2, "stallAfterMs": 500}})).unwrap();
    let outbox = config.outbox.unwrap();
    assert_eq!((outbox.concurrency, outbox.stall_after_ms), (2, 500));
    assert_eq!(outbox.timeout_ms, 30_000);
    assert!(outbox.enabled);
    assert_eq!(Config::default().outbox, None);
    let err = serde_json::from_value::<Config>(json!({"outbox": {"workers": 2}})).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn builder_overrides_the_config_file() {
    let config: Config =
        serde_json::from_value(json!({"sidecar": {"path": "/a"}, "memory": true})).unwrap();
    let over = Overrides {
        sidecar: Some(Sidecar::Path("/b".into())),
        call_timeout: Some(Duration::from_secs(1)),
        ..Overrides::default()
    };
    let (data, exe) = paths_in(Path::new("/nonexistent"));
    let spec = resolve(
        Some(&config),
        &over,
        &AppPaths {
            app_data_dir: &data,
            exe_dir: &exe,
            resource_dir: &no_resource_dir,
        },
    )
    .unwrap();
    assert_eq!(spec.program, PathBuf::from("/b"));
    assert_eq!(spec.args, vec![OsString::from("--memory")]);
    assert_eq!(spec.timing.call_timeout, Duration::from_secs(1));
}

#[test]
fn key_never_reaches_argv_or_debug_output() {
    let over = Overrides {
        memory: Some(true),
        key: Some(KeySource::Value("c2VjcmV0LWtleQ==".into())),
        ..Overrides::default()
    };
    let (data, exe) = paths_in(Path::new("/nonexistent"));
    let spec = resolve(
        None,
        &over,
        &AppPaths {
            app_data_dir: &data,
            exe_dir: &exe,
            resource_dir: &no_resource_dir,
        },
    )
    .unwrap();
    assert!(spec
        .args
        .iter()
        .all(|a| !a.to_string_lossy().contains("c2VjcmV0")));
    assert!(spec
        .env
        .contains(&(KEY_ENV_VAR.into(), "c2VjcmV0LWtleQ==".into())));
    let shown = format!("{spec:?} {:?}", over.key);
    assert!(!shown.contains("c2VjcmV0"), "{shown}");
}

#[test]
fn key_env_must_be_set_and_queue_config_may_not_hold_a_key() {
    let (data, exe) = paths_in(Path::new("/nonexistent"));
    let paths = AppPaths {
        app_data_dir: &data,
        exe_dir: &exe,
        resource_dir: &no_resource_dir,
    };
    let config: Config =
        serde_json::from_value(json!({"memory": true, "keyEnv": "SYNC_QUEUE_TEST_SURELY_UNSET"}))
            .unwrap();
    assert_eq!(
        resolve(Some(&config), &Overrides::default(), &paths)
            .unwrap_err()
            .kind(),
        "Config"
    );
    let config: Config =
        serde_json::from_value(json!({"memory": true, "queue": {"encryption_key": "x"}})).unwrap();
    assert_eq!(
        resolve(Some(&config), &Overrides::default(), &paths)
            .unwrap_err()
            .kind(),
        "Config"
    );
    let config: Config =
        serde_json::from_value(json!({"sidecar": {"command": []}, "memory": true})).unwrap();
    assert_eq!(
        resolve(Some(&config), &Overrides::default(), &paths)
            .unwrap_err()
            .kind(),
        "Config"
    );
}

#[test]
fn a_resource_is_found_beside_the_executable_then_in_the_resource_dir() {
    let dir = tmp("resource");
    let exe_dir = dir.join("target-dir").join("release");
    let installed = dir.join("usr-lib-app");
    let relative = Path::new("sync-queue-sidecar-onedir").join("sync-queue-sidecar");
    let (data, _) = paths_in(&dir);
    let exe = || Ok(exe_dir.clone());
    let res = || Ok(installed.clone());
    let paths = AppPaths {
        app_data_dir: &data,
        exe_dir: &exe,
        resource_dir: &res,
    };
    let config = |rel: &Path| Config {
        sidecar: Some(Sidecar::Resource(rel.to_path_buf())),
        memory: true,
        ..Config::default()
    };
    let program = |rel: &Path| {
        let mut path = rel.to_path_buf();
        if cfg!(windows) {
            path.set_extension("exe");
        }
        path
    };

    // An installed bundle: nothing beside the executable.
    let spec = resolve(Some(&config(&relative)), &Overrides::default(), &paths).unwrap();
    assert_eq!(spec.program, installed.join(program(&relative)));

    // A Cargo build: tauri-build copied the resources beside the executable.
    let beside = exe_dir.join(program(&relative));
    std::fs::create_dir_all(beside.parent().unwrap()).unwrap();
    std::fs::write(&beside, b"").unwrap();
    let spec = resolve(Some(&config(&relative)), &Overrides::default(), &paths).unwrap();
    assert_eq!(spec.program, beside);

    let config: Config = serde_json::from_value(
        json!({"sidecar": {"resource": "/abs/sync-queue-sidecar"}, "memory": true}),
    )
    .unwrap();
    let err = resolve(Some(&config), &Overrides::default(), &paths).unwrap_err();
    assert_eq!(err.kind(), "Config");
    let _ = std::fs::remove_dir_all(&dir);
}
