//! Tokens: the store (`state_dir/tokens.json`, mode 0600, written atomically, one writer at a time)
//! and the manager that refreshes ahead of expiry.
//!
//! Enphase rotates the refresh token on every refresh and the old one dies, so the order is:
//! lock, re-read the file (another process may have refreshed), refresh, write the new pair to
//! disk, and only then hand out the new access token. A refused refresh is written down as
//! "authorization needed" so that no process (and no restart) keeps retrying a dead token.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::clock::SharedClock;
use crate::config::{AuthConfig, AuthFlow};
use crate::enlighten::error::ApiError;
use crate::enlighten::oauth::{OAuthClient, TokenResponse};
use crate::fsutil::{self, FileLock};
use crate::secret::Secret;

/// Refresh at least this often, whatever the access token's life (Enphase's advice; keeps a
/// refresh token far from its one-month end).
pub const MAX_REFRESH_AGE_SECS: i64 = 86_400;
/// How long Enphase keeps a refresh token (one month since 2023-10-16).
pub const REFRESH_TOKEN_LIFE_SECS: i64 = 30 * 86_400;
/// The longest access-token life believed (Enphase gives a day): a larger `expires_in` is
/// taken as this, so that no arithmetic on it can overflow.
const MAX_ACCESS_LIFE_SECS: i64 = 366 * 86_400;
/// Token times outside these epoch seconds (1970 to 9999) mean a damaged token file.
const TIME_RANGE: std::ops::RangeInclusive<i64> = 0..=253_402_300_799;

/// What `tokens.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// The bearer token.
    pub access_token: Secret,
    /// The single-use refresh token.
    pub refresh_token: Secret,
    /// When the access token expires (epoch seconds).
    pub expires_at: i64,
    /// The access token's whole life in seconds, as Enphase gave it.
    pub lifetime_secs: i64,
    /// When this pair was received (epoch seconds); the refresh token was issued then too.
    pub issued_at: i64,
    /// When the homeowner last authorized (or the password grant last logged in).
    pub authorized_at: i64,
    /// The grant that started this chain of tokens.
    pub flow: AuthFlow,
    /// Enlighten user id.
    #[serde(default)]
    pub enl_uid: Option<String>,
    /// `system` or `partner`.
    #[serde(default)]
    pub app_type: Option<String>,
    /// Set when Enphase refused the refresh token: why, in one line. The tokens are dead.
    #[serde(default)]
    pub reauth_needed: Option<String>,
}

impl StoredTokens {
    /// A fresh pair from a token response received at `now`.
    pub fn from_response(resp: TokenResponse, now: i64, flow: AuthFlow, authorized_at: i64) -> Self {
        let lifetime = resp.expires_in.filter(|s| *s > 0).unwrap_or(86_400).min(MAX_ACCESS_LIFE_SECS);
        Self {
            access_token: resp.access_token,
            refresh_token: resp.refresh_token,
            expires_at: now.saturating_add(lifetime),
            lifetime_secs: lifetime,
            issued_at: now,
            authorized_at,
            flow,
            enl_uid: resp.enl_uid,
            app_type: resp.app_type,
            reauth_needed: None,
        }
    }

    /// Seconds before expiry at which to refresh: an hour, or a tenth of the token's life if shorter.
    pub fn refresh_margin_secs(&self) -> i64 {
        (self.lifetime_secs / 10).min(3600)
    }

    /// Whether a refresh is due at `now` (close to expiry, or the pair is a day old).
    pub fn refresh_due(&self, now: i64) -> bool {
        now >= self.expires_at.saturating_sub(self.refresh_margin_secs())
            || now.saturating_sub(self.issued_at) >= MAX_REFRESH_AGE_SECS
    }

    /// Whether the access token can still be used at `now`.
    pub fn access_valid(&self, now: i64) -> bool {
        self.reauth_needed.is_none() && now < self.expires_at
    }

    /// Why the homeowner must authorize again, if they must.
    pub fn reauth_reason(&self, now: i64) -> Option<String> {
        if let Some(reason) = &self.reauth_needed {
            return Some(reason.clone());
        }
        (now.saturating_sub(self.issued_at) >= REFRESH_TOKEN_LIFE_SECS)
            .then(|| "the refresh token is over a month old".to_string())
    }

    /// What makes a stored pair unusable however it is read: a blank token, or a time no token
    /// can have.
    fn damage(&self) -> Option<&'static str> {
        if self.access_token.is_blank() || self.refresh_token.is_blank() {
            return Some("a token is empty");
        }
        let times = [self.expires_at, self.issued_at, self.authorized_at];
        if times.iter().any(|t| !TIME_RANGE.contains(t)) || !(0..=MAX_ACCESS_LIFE_SECS).contains(&self.lifetime_secs) {
            return Some("a time is out of range");
        }
        None
    }
}

/// `state_dir/tokens.json` and its lock.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
    lock_path: PathBuf,
    dir: PathBuf,
}

impl TokenStore {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("tokens.json"),
            lock_path: state_dir.join("tokens.lock"),
            dir: state_dir.to_path_buf(),
        }
    }

    /// The token file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored tokens; `Ok(None)` when there are none yet. A damaged file needs a new
    /// authorization; a file that cannot be read at all (a folder, no permission) is a storage
    /// problem, which authorizing again would not mend.
    pub fn load(&self) -> Result<Option<StoredTokens>, ApiError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let damaged = |why: &str| ApiError::AuthorizationNeeded {
                    reason: format!("{} is damaged ({why}); authorize again", self.path.display()),
                };
                // serde quotes the value it could not read: a token, maybe.
                let tokens: StoredTokens = serde_json::from_slice(&bytes)
                    .map_err(|err| damaged(&crate::secret::hide_quoted_values(&err.to_string())))?;
                match tokens.damage() {
                    Some(why) => Err(damaged(why)),
                    None => Ok(Some(tokens)),
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(ApiError::Storage { message: format!("reading {}: {err}", self.path.display()) }),
        }
    }

    /// Writes the tokens atomically (temp file, fsync, rename, fsync the folder), mode 0600.
    pub fn save(&self, tokens: &StoredTokens) -> std::io::Result<()> {
        fsutil::ensure_private_dir(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(tokens).expect("tokens serialize");
        fsutil::write_atomic(&self.path, &bytes)
    }

    /// Waits for the cross-process token lock.
    pub async fn lock(&self) -> std::io::Result<FileLock> {
        fsutil::ensure_private_dir(&self.dir)?;
        let path = self.lock_path.clone();
        tokio::task::spawn_blocking(move || FileLock::acquire(&path)).await.map_err(std::io::Error::other)?
    }

    /// A failure to write or lock the store, naming its folder.
    fn failed(&self, err: std::io::Error) -> ApiError {
        ApiError::Storage { message: format!("token store in {}: {err}", self.dir.display()) }
    }

    fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }
}

/// Hands out a valid access token, refreshing ahead of expiry; the one refresher per process.
#[derive(Debug)]
pub struct TokenManager {
    store: TokenStore,
    oauth: OAuthClient,
    clock: SharedClock,
    auth: AuthConfig,
    /// The tokens in use and the token file's mtime when they were read.
    current: Mutex<Option<(StoredTokens, Option<SystemTime>)>>,
}

impl TokenManager {
    /// A manager over a store.
    pub fn new(store: TokenStore, oauth: OAuthClient, clock: SharedClock, auth: AuthConfig) -> Self {
        Self { store, oauth, clock, auth, current: Mutex::new(None) }
    }

    /// The store.
    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// The OAuth client.
    pub fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    /// The tokens as they are now (re-read when the file changed), without refreshing.
    pub async fn current(&self) -> Result<Option<StoredTokens>, ApiError> {
        let mut guard = self.current.lock().await;
        self.reload_if_changed(&mut guard)?;
        Ok(guard.as_ref().map(|(t, _)| t.clone()))
    }

    /// A usable access token: refreshed first when due. When a due refresh fails for a passing
    /// reason and the old token is still valid, the old token is used.
    pub async fn access_token(&self) -> Result<Secret, ApiError> {
        let mut guard = self.current.lock().await;
        self.reload_if_changed(&mut guard)?;
        let now = self.clock.now_secs();
        let tokens = self.usable(&guard)?;
        if !tokens.refresh_due(now) {
            return Ok(tokens.access_token.clone());
        }
        match self.refresh_locked(&mut guard, None).await {
            Ok(token) => Ok(token),
            Err(err) if err.is_transient() || matches!(err, ApiError::BudgetExhausted { .. }) => match guard.as_ref() {
                Some((t, _)) if t.access_valid(now) => {
                    tracing::warn!(error = %err, "token refresh failed; using the current access token until it expires");
                    Ok(t.access_token.clone())
                }
                _ => Err(err),
            },
            Err(err) => Err(err),
        }
    }

    /// After Enphase rejected `rejected` with a 401: a new access token, refreshing unless another
    /// caller already did.
    pub async fn refresh_after_rejection(&self, rejected: &Secret) -> Result<Secret, ApiError> {
        let mut guard = self.current.lock().await;
        self.reload_if_changed(&mut guard)?;
        self.refresh_locked(&mut guard, Some(rejected)).await
    }

    /// Refreshes now, whether due or not (`auth refresh`).
    pub async fn force_refresh(&self) -> Result<StoredTokens, ApiError> {
        let mut guard = self.current.lock().await;
        self.reload_if_changed(&mut guard)?;
        self.usable(&guard)?;
        self.refresh_locked(&mut guard, None).await?;
        Ok(guard.as_ref().map(|(t, _)| t.clone()).expect("tokens were just stored"))
    }

    /// Stores tokens from a first grant (authorization code or password) and uses them from now on.
    pub async fn store_new(&self, resp: TokenResponse, flow: AuthFlow) -> Result<StoredTokens, ApiError> {
        let mut guard = self.current.lock().await;
        let _lock = self.store.lock().await.map_err(|e| self.store.failed(e))?;
        let now = self.clock.now_secs();
        let tokens = StoredTokens::from_response(resp, now, flow, now);
        self.store.save(&tokens).map_err(|e| self.store.failed(e))?;
        *guard = Some((tokens.clone(), self.store.modified()));
        Ok(tokens)
    }

    fn usable<'a>(&self, guard: &'a Option<(StoredTokens, Option<SystemTime>)>) -> Result<&'a StoredTokens, ApiError> {
        let Some((tokens, _)) = guard else {
            return Err(ApiError::AuthorizationNeeded {
                reason: format!("no tokens in {}: run `enphase-mqtt auth login`", self.store.path().display()),
            });
        };
        if let Some(reason) = &tokens.reauth_needed
            && self.auth.flow != AuthFlow::Password
        {
            return Err(ApiError::AuthorizationNeeded { reason: reason.clone() });
        }
        Ok(tokens)
    }

    /// Re-reads the file when its mtime differs from the copy in memory (another process stored tokens).
    fn reload_if_changed(&self, guard: &mut Option<(StoredTokens, Option<SystemTime>)>) -> Result<(), ApiError> {
        let mtime = self.store.modified();
        if guard.as_ref().is_some_and(|(_, seen)| *seen == mtime && mtime.is_some()) {
            return Ok(());
        }
        let loaded = self.store.load()?;
        *guard = loaded.map(|t| (t, mtime));
        Ok(())
    }

    /// The refresh itself, under the cross-process lock. `rejected`: the access token a 401 came
    /// back for; if the file already holds a different one, another process refreshed and that
    /// one is used instead.
    async fn refresh_locked(
        &self,
        guard: &mut Option<(StoredTokens, Option<SystemTime>)>,
        rejected: Option<&Secret>,
    ) -> Result<Secret, ApiError> {
        let _lock = self.store.lock().await.map_err(|e| self.store.failed(e))?;
        // Another process may have refreshed while we waited for the lock.
        let before = guard.as_ref().map(|(t, _)| t.refresh_token.clone());
        *guard = None;
        self.reload_if_changed(guard)?;
        let now = self.clock.now_secs();
        let tokens = self.usable(guard)?.clone();
        let someone_else_refreshed = before.is_some_and(|b| b != tokens.refresh_token);
        if someone_else_refreshed && tokens.access_valid(now) && rejected.is_none_or(|r| *r != tokens.access_token) {
            return Ok(tokens.access_token);
        }
        if tokens.reauth_needed.is_some() {
            // Only reachable with the password flow: log in again once.
            return self.password_login(guard, &tokens, now).await;
        }
        match self.oauth.refresh(&tokens.refresh_token).await {
            Ok(resp) => {
                let fresh = StoredTokens::from_response(resp, now, tokens.flow, tokens.authorized_at);
                // The new refresh token is on disk before the new access token is used.
                self.store.save(&fresh).map_err(|e| self.store.failed(e))?;
                tracing::info!(expires_at = fresh.expires_at, "Enphase tokens refreshed");
                let token = fresh.access_token.clone();
                *guard = Some((fresh, self.store.modified()));
                Ok(token)
            }
            Err(ApiError::AuthorizationNeeded { reason }) => {
                tracing::error!(reason, "Enphase refused the refresh token");
                if self.auth.flow == AuthFlow::Password {
                    return self.password_login(guard, &tokens, now).await;
                }
                self.mark_dead(guard, tokens, reason)
            }
            Err(err) => Err(err),
        }
    }

    /// Password flow: one fresh login after a refused refresh, then "authorization needed".
    async fn password_login(
        &self,
        guard: &mut Option<(StoredTokens, Option<SystemTime>)>,
        old: &StoredTokens,
        now: i64,
    ) -> Result<Secret, ApiError> {
        if old.reauth_needed.as_deref().is_some_and(|r| r.starts_with("password login refused")) {
            return Err(ApiError::AuthorizationNeeded { reason: old.reauth_needed.clone().unwrap_or_default() });
        }
        match self.oauth.password(&self.auth.username, &self.auth.password).await {
            Ok(resp) => {
                let fresh = StoredTokens::from_response(resp, now, AuthFlow::Password, now);
                self.store.save(&fresh).map_err(|e| self.store.failed(e))?;
                tracing::info!("logged in to Enphase again with the password grant");
                let token = fresh.access_token.clone();
                *guard = Some((fresh, self.store.modified()));
                Ok(token)
            }
            Err(ApiError::AuthorizationNeeded { reason }) => {
                self.mark_dead(guard, old.clone(), format!("password login refused: {reason}"))
            }
            Err(err) => Err(err),
        }
    }

    fn mark_dead(
        &self,
        guard: &mut Option<(StoredTokens, Option<SystemTime>)>,
        mut tokens: StoredTokens,
        reason: String,
    ) -> Result<Secret, ApiError> {
        tokens.reauth_needed = Some(reason.clone());
        self.store.save(&tokens).map_err(|e| self.store.failed(e))?;
        *guard = Some((tokens, self.store.modified()));
        Err(ApiError::AuthorizationNeeded { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(lifetime: i64, issued_at: i64) -> StoredTokens {
        StoredTokens {
            access_token: Secret::new("a"),
            refresh_token: Secret::new("r"),
            expires_at: issued_at + lifetime,
            lifetime_secs: lifetime,
            issued_at,
            authorized_at: issued_at,
            flow: AuthFlow::AuthorizationCode,
            enl_uid: None,
            app_type: None,
            reauth_needed: None,
        }
    }

    #[test]
    fn margin_is_an_hour_or_a_tenth_of_the_life() {
        assert_eq!(tokens(86_393, 0).refresh_margin_secs(), 3600);
        assert_eq!(tokens(60, 0).refresh_margin_secs(), 6);
        let t = tokens(60, 1000);
        assert!(!t.refresh_due(1053));
        assert!(t.refresh_due(1054));
    }

    #[test]
    fn a_day_old_pair_is_refreshed_even_with_a_long_life() {
        let t = tokens(7 * 86_400, 0);
        assert!(!t.refresh_due(86_399));
        assert!(t.refresh_due(86_400));
    }

    #[test]
    fn reauth_reason_from_marker_or_age() {
        let mut t = tokens(86_400, 0);
        assert_eq!(t.reauth_reason(10), None);
        assert!(t.reauth_reason(REFRESH_TOKEN_LIFE_SECS).is_some());
        t.reauth_needed = Some("refused".into());
        assert_eq!(t.reauth_reason(10).as_deref(), Some("refused"));
        assert!(!t.access_valid(10));
    }

    #[test]
    fn an_absurd_token_life_is_bounded() {
        let resp: TokenResponse = serde_json::from_value(serde_json::json!({
            "access_token": "a", "refresh_token": "r", "expires_in": i64::MAX
        }))
        .unwrap();
        let t = StoredTokens::from_response(resp, 1_000, AuthFlow::AuthorizationCode, 1_000);
        assert_eq!(t.lifetime_secs, MAX_ACCESS_LIFE_SECS);
        assert_eq!(t.expires_at, 1_000 + MAX_ACCESS_LIFE_SECS);
        assert!(!t.refresh_due(1_001));
    }

    #[test]
    fn a_stored_pair_that_cannot_be_used_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let mut blank = tokens(100, 5);
        blank.access_token = Secret::new("");
        let mut timeless = tokens(100, 5);
        timeless.issued_at = i64::MIN;
        for bad in [blank, timeless] {
            store.save(&bad).unwrap();
            let err = store.load().unwrap_err();
            assert!(matches!(err, ApiError::AuthorizationNeeded { .. }), "{err}");
            assert!(err.to_string().contains("is damaged"), "{err}");
        }
        // A token in the wrong field is not quoted back.
        std::fs::write(store.path(), r#"{"access_token":"a","refresh_token":"r","expires_at":1,"lifetime_secs":1,"issued_at":1,"authorized_at":1,"flow":"ACCESSTOK555"}"#).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("is damaged") && !err.contains("ACCESSTOK555"), "{err}");
        // A folder where the file should be is no reason to authorize again.
        std::fs::remove_file(store.path()).unwrap();
        std::fs::create_dir(store.path()).unwrap();
        assert!(matches!(store.load().unwrap_err(), ApiError::Storage { .. }));
    }

    #[test]
    fn store_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(&dir.path().join("state"));
        assert!(store.load().unwrap().is_none());
        let t = tokens(100, 5);
        store.save(&t).unwrap();
        assert_eq!(store.load().unwrap(), Some(t));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
