//! Settings: layering of file, environment and flags; checks; the README's table.

use super::*;

#[test]
fn env_overrides_file_and_flags_override_env() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("nudge.toml", "listen = \"0.0.0.0:1\"\npartitions = 8\n")?;
        jail.set_env("NUDGE_LISTEN", "0.0.0.0:2");
        jail.set_env("NUDGE_RULE_MAX_OPERATIONS", "7");
        jail.set_env("NUDGE_SOMETHING_ELSE", "not a setting");
        let from_env = Settings::load(&SettingsFlags::default()).map_err(|e| *e)?;
        assert_eq!(from_env.listen, "0.0.0.0:2");
        assert_eq!(from_env.partitions, 8);
        assert_eq!(from_env.rule_limits().max_operations, 7);
        let flags = SettingsFlags {
            listen: Some("0.0.0.0:3".into()),
            ..SettingsFlags::default()
        };
        assert_eq!(Settings::load(&flags).map_err(|e| *e)?.listen, "0.0.0.0:3");
        Ok(())
    });
}

#[test]
fn unknown_setting_is_an_error() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("nudge.toml", "lanez = 8\n")?;
        let err = Settings::load(&SettingsFlags::default()).unwrap_err();
        assert!(err.to_string().contains("lanez"), "{err}");
        Ok(())
    });
}

#[test]
fn retry_backoff_repeats_its_last_step() {
    let s = Settings::default();
    assert_eq!(s.retry_delay(1).as_millis(), 1_000);
    assert_eq!(s.retry_delay(2).as_millis(), 5_000);
    assert_eq!(s.retry_delay(99).as_millis(), 120_000);
}

#[test]
fn retired_settings_warn_instead_of_failing() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("nudge.toml", "lanes = 8\npartitions = 4\n")?;
        jail.set_env("NUDGE_ACK_WAIT_MS", "2000");
        let settings = Settings::load(&SettingsFlags::default()).map_err(|e| *e)?;
        assert_eq!(settings.partitions, 4);
        Ok(())
    });
}

#[test]
fn a_duplicate_window_shorter_than_a_failover_is_refused() {
    let settings = Settings {
        actions_duplicate_window_s: 30,
        ..Settings::default()
    };
    let error = settings.check().unwrap_err().to_string();
    assert!(error.contains("actions_duplicate_window_s"), "{error}");
    assert!(error.contains("partition_lease_ms"), "{error}");
    Settings::default().check().unwrap();
}

#[test]
fn the_relay_settings_must_make_a_relay() {
    let relay = |changes: &dyn Fn(&mut Settings)| {
        let mut settings = Settings {
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            email_from: Some("Shop <shop@example.com>".into()),
            ..Settings::default()
        };
        changes(&mut settings);
        settings.check().map_err(|e| e.to_string())
    };
    assert_eq!(relay(&|_| {}), Ok(()));
    for (change, named) in [
        (
            &(|s: &mut Settings| s.email_from = None) as &dyn Fn(&mut Settings),
            "email_from",
        ),
        (
            &|s: &mut Settings| s.email_from = Some("not an address".into()),
            "email_from",
        ),
        (
            &|s: &mut Settings| s.smtp_url = Some("http://relay".into()),
            "smtp_url",
        ),
        (
            &|s: &mut Settings| s.smtp_url = Some("relay:25".into()),
            "smtp_url",
        ),
        (
            &|s: &mut Settings| s.smtp_username = Some("u".into()),
            "smtp_username",
        ),
        (
            &|s: &mut Settings| s.public_url = Some("ftp://x".into()),
            "public_url",
        ),
    ] {
        let error = relay(change).unwrap_err();
        assert!(error.starts_with(named), "{named}: {error}");
    }
}

/// Every setting is documented in the README's settings table.
#[test]
fn the_readme_lists_every_setting() {
    let readme = include_str!("../../../README.md");
    let settings = serde_json::to_value(Settings::default()).expect("settings serialize");
    let missing: Vec<&String> = settings
        .as_object()
        .expect("an object")
        .keys()
        .filter(|name| {
            !readme
                .lines()
                .any(|line| line.starts_with("| `") && line.contains(&format!("`{name}`")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in README.md's settings table: {missing:?}"
    );
}
