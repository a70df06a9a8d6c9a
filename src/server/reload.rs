//! What triggers a rules reload: a debounced watch of the rules directory and SIGHUP.
//! Owns the watcher and the signal task; the reload itself (compile, then swap) is
//! [`AppState::reload_rules`]. Never swaps anything itself.

use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {dir}: {source}")]
    Watch { dir: String, source: notify::Error },
}

/// Watches the rules directory and its folders (not files: editors and `git checkout`
/// replace files by rename) and reloads after `debounce` of quiet. The returned watcher
/// must be kept.
pub fn watch_rules(
    state: AppState,
    debounce: Duration,
) -> Result<notify::RecommendedWatcher, WatchError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let dir = state.regions_dir().to_owned();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if !ev.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|source| WatchError::Watch {
        dir: dir.display().to_string(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Watch {
            dir: dir.display().to_string(),
            source,
        })?;
    tracing::info!(dir = %state.regions_dir().display(), "watching rules directory");
    actix_web::rt::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event arrived for `debounce`.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = state.reload_rules("watch").await;
        }
    });
    Ok(watcher)
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
pub fn reload_on_sighup(state: AppState) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    actix_web::rt::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = state.reload_rules("sighup").await;
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.geo().reload()).await;
        }
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn reload_on_sighup(_state: AppState) -> std::io::Result<()> {
    Ok(())
}
