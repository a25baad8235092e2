//! Login and tokens end to end: the real binary against the simulator over loopback HTTP.

mod common;

use common::*;
use enphase_mqtt::simulator::{SimOptions, SimPlan};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Starts `auth login` on a free port and returns the child and the authorize URL it printed.
async fn start_login(setup: &Setup) -> (tokio::process::Child, String) {
    let mut child = setup.spawn(&["auth", "login", "--listen", "127.0.0.1:0", "--timeout", "20"]);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(LIMIT, lines.next_line()).await.expect("URL printed in time").unwrap().unwrap();
    (child, url)
}

/// Plays the browser: opens the authorize URL and follows the redirect to our listener.
async fn browse(authorize_url: &str) -> (reqwest::StatusCode, String, String) {
    let client = http();
    let resp = client.get(authorize_url).send().await.unwrap();
    assert_eq!(resp.status(), 302, "the simulator redirects back");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let page = client.get(&location).send().await.unwrap();
    (page.status(), page.text().await.unwrap(), location)
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_end_to_end_with_a_test_playing_the_browser() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let setup = Setup::new(&sim, &opts, "");

    let (child, url) = start_login(&setup).await;
    assert!(
        url.starts_with(&format!("{}/oauth/authorize?response_type=code&client_id={}", sim.base_url, opts.client_id)),
        "{url}"
    );
    assert!(url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A") && url.contains("&state="), "{url}");
    let (status, page, location) = browse(&url).await;
    assert_eq!(status, 200);
    assert!(page.contains("You can close this tab"), "{page}");
    assert!(location.contains("code="));

    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let tokens = setup.tokens();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(setup.tokens_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let valid = admin_get(&sim, "/admin/tokens").await;
    assert_eq!(valid["valid_refresh_tokens"], json!([tokens["refresh_token"]]));

    let status = setup.run(&["auth", "status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert!(status.stdout.contains("authorization:     OK"), "{}", status.stdout);
    assert!(status.stdout.contains("flow:              authorization_code"));
    let all =
        format!("{}{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr), status.stdout);
    assert_no_secrets(&all, &opts, Some(&tokens));
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_approval_exits_3_and_stores_nothing() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let setup = Setup::new(&sim, &opts, "");
    admin_post(&sim, "/admin/deny", json!({"count": 1})).await;

    let (child, url) = start_login(&setup).await;
    let (_, page, location) = browse(&url).await;
    assert!(location.contains("error=access_denied"), "{location}");
    assert!(page.contains("Not authorized"), "{page}");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not approve"), "{stderr}");
    assert!(!setup.tokens_path().exists());
    assert_eq!(setup.run(&["auth", "status"]).await.code, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_with_the_wrong_state_is_refused() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let setup = Setup::new(&sim, &opts, "");
    let (child, url) = start_login(&setup).await;
    let resp = http().get(&url).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let forged = location.split("&state=").next().unwrap().to_string() + "&state=forged";
    let page = http().get(&forged).send().await.unwrap();
    assert_eq!(page.status(), 400);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state"));
    assert!(!setup.tokens_path().exists(), "a redirect with a forged state must not be exchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_url_then_auth_code_and_the_code_is_single_use() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let redirect = format!("{}/oauth/redirect_uri", sim.base_url);
    let setup = Setup::new(&sim, &opts, &format!("  auth:\n    redirect_uri: {redirect}\n"));

    let out = setup.run(&["auth", "url"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let url = out.stdout.trim();
    assert!(url.contains("response_type=code") && url.contains("state="), "{url}");
    let resp = http().get(url).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&redirect), "{location}");

    // The whole URL: its state is checked against the one `auth url` saved.
    let out = setup.run(&["auth", "code", &location]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let first = setup.tokens();

    // Exchanging the same code again is refused (exit 3) and leaves the stored tokens alone.
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let again = setup.run(&["auth", "code", code]).await;
    assert_eq!(again.code, Some(3), "{again:?}");
    assert!(again.stderr.contains("authorization code"), "{}", again.stderr);
    assert_eq!(setup.tokens(), first);
    assert_no_secrets(&format!("{}{}", again.stderr, out.stderr), &opts, Some(&first));
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_and_the_old_refresh_token_is_dead() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let setup = Setup::new(&sim, &opts, "");
    let (child, url) = start_login(&setup).await;
    browse(&url).await;
    assert_eq!(child.wait_with_output().await.unwrap().status.code(), Some(0));
    let before = setup.tokens();

    let out = setup.run(&["auth", "refresh"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let after = setup.tokens();
    assert_ne!(before["refresh_token"], after["refresh_token"]);
    assert_ne!(before["access_token"], after["access_token"]);

    // The old refresh token is rejected by the token endpoint.
    let old = http()
        .post(format!("{}/oauth/token", sim.base_url))
        .query(&[("grant_type", "refresh_token"), ("refresh_token", before["refresh_token"].as_str().unwrap())])
        .basic_auth(&opts.client_id, Some(&opts.client_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 400);
    let tokens = admin_get(&sim, "/admin/tokens").await;
    assert_eq!(tokens["valid_refresh_tokens"], json!([after["refresh_token"]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_means_authorization_needed_without_retrying() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let setup = Setup::new(&sim, &opts, "");
    let (child, url) = start_login(&setup).await;
    browse(&url).await;
    assert_eq!(child.wait_with_output().await.unwrap().status.code(), Some(0));

    admin_post(&sim, "/admin/revoke", json!({})).await;
    let before = hits(&sim).await.len();
    let out = setup.run(&["auth", "refresh"]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("refused the refresh token"), "{}", out.stderr);
    // Exactly one token call: no retry loop, and none at all on the next attempt.
    assert_eq!(hits(&sim).await.len() - before, 1);
    let again = setup.run(&["auth", "refresh"]).await;
    assert_eq!(again.code, Some(3));
    assert_eq!(hits(&sim).await.len() - before, 1, "a dead refresh token is not sent again");
    let status = setup.run(&["auth", "status"]).await;
    assert_eq!(status.code, Some(3));
    assert!(status.stdout.contains("authorization:     needed"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_flow_logs_in_again_once_then_reports_authorization_needed() {
    let opts = SimOptions { plan: SimPlan::Partner, ..SimOptions::default() };
    let sim = sim(opts.clone()).await;
    let auth =
        format!("  auth:\n    flow: password\n    username: {}\n    password: {}\n", opts.username, opts.password);
    let setup = Setup::new(&sim, &opts, &auth);

    let out = setup.run(&["auth", "login"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(setup.tokens()["flow"], "password");
    assert_eq!(setup.tokens()["app_type"], "partner");

    // Refresh refused → one password login → fresh tokens.
    admin_post(&sim, "/admin/revoke", json!({})).await;
    let out = setup.run(&["auth", "refresh"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let grants: Vec<String> = hits(&sim).await.iter().filter_map(|h| h["grant"].as_str().map(str::to_string)).collect();
    assert_eq!(grants, vec!["password", "refresh_token", "password"]);

    // With a wrong password the second login fails too: authorization needed, exit 3.
    let bad = Setup::new(&sim, &opts, &auth.replace(&opts.password, "wrong-password"));
    std::fs::create_dir_all(&bad.state_dir).unwrap();
    std::fs::copy(setup.tokens_path(), bad.tokens_path()).unwrap();
    admin_post(&sim, "/admin/revoke", json!({})).await;
    let out = bad.run(&["auth", "refresh"]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("password login refused"), "{}", out.stderr);
    assert_no_secrets(&out.stderr, &opts, None);
    assert!(!out.stderr.contains("wrong-password"));
    assert_eq!(bad.run(&["auth", "status"]).await.code, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_status_without_tokens_exits_3() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let setup = Setup::new(&sim, &opts, "");
    let out = setup.run(&["auth", "status"]).await;
    assert_eq!(out.code, Some(3));
    assert!(out.stdout.contains("tokens:            none"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_ledger_counts_the_month_as_spent_and_is_said_once() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let setup = Setup::new(&sim, &opts, "");
    std::fs::create_dir_all(&setup.state_dir).unwrap();
    std::fs::write(setup.state_dir.join("ledger.json"), b"{ not json").unwrap();
    let out = setup.run(&["auth", "status"]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stdout.contains("hits:              1000 of 1000 this month"), "{}", out.stdout);
    assert_eq!(out.stderr.matches("hit ledger is unreadable").count(), 1, "{}", out.stderr);
}
