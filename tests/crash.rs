//! kill -9 of `enphase-mqtt` at random instants during refreshes, many times: the token file is
//! never missing, never partial, never of the wrong mode, and never older than what it held
//! before the killed run (a pair still on the wire when the process died cannot be saved by
//! anyone; every pair the process did receive is on disk before it is used).

mod common;

use std::time::{Duration, Instant};

use common::*;
use enphase_mqtt::simulator::{SimHandle, SimOptions, SimPlan};
use serde_json::{Value, json};

const ROUNDS: usize = 40;

/// Every refresh token the simulator ever issued, oldest first.
async fn issued(sim: &SimHandle) -> Vec<Value> {
    admin_get(sim, "/admin/tokens").await["issued_refresh_tokens"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_refreshes_never_leaves_a_missing_partial_or_stale_token_file() {
    let opts = SimOptions { plan: SimPlan::Partner, ..SimOptions::default() };
    let sim = sim(opts.clone()).await;
    let auth =
        format!("  auth:\n    flow: password\n    username: {}\n    password: {}\n", opts.username, opts.password);
    let setup = Setup::new(&sim, &opts, &auth);
    assert_eq!(setup.run(&["auth", "login"]).await.code, Some(0));
    // Widen the window between the server issuing a pair and the client receiving it a little,
    // so that kills land before, during and after the refresh.
    admin_post(&sim, "/admin/token_delay", json!({"ms": 5})).await;

    // How long an undisturbed refresh takes (the median of three: the first run of a fresh build
    // can be several times slower), to spread the kills over it.
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(setup.run(&["auth", "refresh"]).await.code, Some(0));
        took.push(started.elapsed().as_micros() as u64);
    }
    took.sort_unstable();
    let mut span = took[1].max(2_000) * 12 / 10;

    let (mut killed, mut finished, mut in_flight_losses) = (0, 0, 0);
    for round in 0..ROUNDS {
        let before_file = setup.tokens()["refresh_token"].clone();
        let issued_before = issued(&sim).await.len();
        let mut child = setup.spawn(&["auth", "refresh"]);
        tokio::time::sleep(Duration::from_micros(rand::random_range(0..span))).await;
        let signalled = match child.try_wait().unwrap() {
            Some(_) => false,
            None => {
                child.start_kill().unwrap(); // SIGKILL
                true
            }
        };
        let status = tokio::time::timeout(LIMIT, child.wait()).await.expect("child ends").unwrap();
        let was_killed = signalled && status.code().is_none();
        // Keep the kills landing inside runs on a machine that speeds up or slows down: a run
        // that ended first shortens the span, a killed one lengthens it a little.
        span = if was_killed { span * 11 / 10 } else { (span * 3 / 4).max(500) };
        if was_killed {
            killed += 1;
        } else {
            assert_eq!(status.code(), Some(0), "round {round}: an undisturbed refresh succeeds");
            finished += 1;
        }

        // Never missing, never partial, never readable by others.
        let bytes =
            std::fs::read(setup.tokens_path()).unwrap_or_else(|e| panic!("round {round}: tokens.json missing: {e}"));
        let tokens: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("round {round}: partial tokens.json: {e}"));
        assert!(tokens["access_token"].is_string() && tokens["refresh_token"].is_string(), "round {round}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(setup.tokens_path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "round {round}");
        }

        // Never stale: the file holds what it held before this run, or a pair issued during it;
        // and a run that was not killed leaves the newest pair the server issued.
        let all = issued(&sim).await;
        let mine = &tokens["refresh_token"];
        assert!(
            all[issued_before..].contains(mine) || *mine == before_file,
            "round {round}: the token file went back to an older pair"
        );
        if !was_killed {
            assert_eq!(Some(mine), all.last(), "round {round}: a finished refresh left the newest pair on disk");
        }
        if Some(mine) != all.last() {
            // The newest pair was on the wire when the process died. With the password flow the
            // next refresh is refused and the bridge logs in again by itself.
            in_flight_losses += 1;
        }
    }
    eprintln!(
        "{ROUNDS} rounds: {killed} killed mid-run, {finished} finished first, {in_flight_losses} rounds ended with the newest pair lost in flight"
    );
    assert!(killed >= ROUNDS / 4, "the kills must interrupt runs, not only finished ones ({killed} of {ROUNDS})");
    let refreshes = hits(&sim).await.iter().filter(|h| h["grant"] == "refresh_token").count();
    assert!(refreshes >= ROUNDS / 4, "refreshes were actually under way ({refreshes})");

    // And the chain still works afterwards.
    let out = setup.run(&["auth", "refresh"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let server = admin_get(&sim, "/admin/tokens").await;
    let valid = server["valid_refresh_tokens"].as_array().unwrap();
    assert!(valid.contains(&setup.tokens()["refresh_token"]), "the stored refresh token is live");
}
