//! The configuration loader on TOML text: `Config::from_toml` for two environments,
//! then what a service reads from it (the runtime's settings, the `http` table, the
//! table check, the `Debug`): a value or a `ConfigError`, never a panic; and settings
//! that load are ones the runtime computes with (deadlines, the drain's reserve)
//! without overflow.

#![no_main]
#![allow(
    clippy::disallowed_methods,
    reason = "fuzz_target! (libfuzzer-sys) writes its debug file with std::fs; no worker loop here"
)]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use nucleon_http::HttpConfig;
use nucleon_runtime::{Config, Drain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for environment in ["default", "production"] {
        let config = match Config::from_toml(text, environment) {
            Ok(config) => config,
            Err(error) => {
                assert!(!error.to_string().is_empty());
                continue;
            }
        };
        let _ = format!("{config:?}");
        let _ = config.tables();
        if let Err(error) = config.check_tables(&["runtime", "http", "app"]) {
            assert!(!error.to_string().is_empty());
        }
        if let Ok(settings) = config.runtime_settings() {
            let reserve = settings.process_reserve_in_force();
            assert!(reserve <= settings.shutdown_timeout);
            assert_eq!(
                settings.workers_phase() + reserve,
                settings.shutdown_timeout
            );
            for duration in [
                Some(settings.shutdown_timeout),
                Some(settings.start_timeout),
                settings.process_reserve,
                Some(settings.watchdog.threshold),
                settings.watchdog.heartbeat,
                Some(settings.offload.keep_alive),
            ]
            .into_iter()
            .flatten()
            {
                let _ = Drain::new().deadline(duration);
            }
        }
        if let Ok(http) = config.extract_at::<HttpConfig>("http") {
            let _ = http.addr();
            let now = Instant::now();
            for duration in [
                Some(http.header_read_timeout),
                Some(http.send_timeout),
                Some(http.body_read_timeout),
                http.request_timeout,
                Some(http.lame_duck),
                Some(http.drain_idle_grace),
            ]
            .into_iter()
            .flatten()
            {
                let _ = now + duration;
            }
        }
    }
});
