//! The shutdown signal of a process: set once (SIGTERM, Ctrl-C, a parent
//! gone), observed by every loop that must stop taking work.

use tokio::sync::watch;

/// The shutdown signal: set once, observed by every loop.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Sets the [`Shutdown`] signal.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Whether shutdown was asked for.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is asked for.
    pub async fn wait(&mut self) {
        // An error means the trigger is gone: nobody can ask any more, so
        // treat it as asked.
        let _ = self.0.wait_for(|set| *set).await;
    }
}
