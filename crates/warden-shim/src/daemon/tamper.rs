//! Tamper sources behind one trait: a file trigger, a signal, and a Linux GPIO line (the case
//! switch on production boxes). Each watches on its own thread and reports through `notify`;
//! the daemon turns any report into EMERGENCY_STOP at once. Level sources (the file, the GPIO
//! line) also keep a flag saying whether they *still* report tamper, so a reset is refused
//! until the cause is gone; a signal is an edge and has no level.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{GpioConfig, TamperConfig, TamperSignal};
use warden_core::report::report;

/// Called with a description of what was detected, from the source's thread.
pub type Notify = Box<dyn Fn(String) + Send + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum TamperSetupError {
    #[error("tamper signal: cannot install the handler: {0}")]
    Signal(std::io::Error),
    #[error("tamper GPIO {chip} line {line}: {reason}")]
    Gpio {
        chip: PathBuf,
        line: u32,
        reason: String,
    },
}

/// A source of tamper reports.
pub trait TamperSource {
    /// A short name for logs and alerts.
    fn name(&self) -> String;
    /// Starts watching; reports go to `notify`, and the level to `active` (sources without a
    /// level leave it false).
    fn spawn(
        self: Box<Self>,
        notify: Notify,
        active: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>>;
}

/// Which sources still report tamper, read by the daemon when a reset is asked for.
#[derive(Clone, Default)]
pub struct TamperLevels {
    sources: Vec<(String, Arc<AtomicBool>)>,
}

impl TamperLevels {
    /// Starts `source`, keeping its level.
    pub fn spawn(
        &mut self,
        source: Box<dyn TamperSource>,
        notify: Notify,
    ) -> std::io::Result<JoinHandle<()>> {
        let active = Arc::new(AtomicBool::new(false));
        self.sources.push((source.name(), Arc::clone(&active)));
        source.spawn(notify, active)
    }

    /// The names of the sources that report tamper right now.
    pub fn active(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|(_, level)| level.load(Ordering::SeqCst))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

// Implements: S18
/// Tamper when a file appears (a test hook, or a script watching other sensors); it reports
/// tamper for as long as the file is there.
pub struct FileTrigger {
    pub path: PathBuf,
    pub poll: Duration,
}

impl TamperSource for FileTrigger {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn spawn(
        self: Box<Self>,
        notify: Notify,
        active: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        // The level is known before the thread runs: a reset asked for right after start sees it.
        active.store(self.path.symlink_metadata().is_ok(), Ordering::SeqCst);
        std::thread::Builder::new()
            .name("tamper-file".into())
            .spawn(move || {
                let mut present = false;
                loop {
                    let now = self.path.symlink_metadata().is_ok();
                    active.store(now, Ordering::SeqCst);
                    if now && !present {
                        notify(format!(
                            "tamper trigger file {} appeared",
                            self.path.display()
                        ));
                    }
                    present = now;
                    std::thread::sleep(self.poll);
                }
            })
    }
}

// Implements: S19
/// Tamper on SIGUSR1 or SIGUSR2.
pub struct SignalTrigger {
    signals: signal_hook::iterator::Signals,
    signal: TamperSignal,
}

impl SignalTrigger {
    pub fn new(signal: TamperSignal) -> Result<Self, TamperSetupError> {
        let number = match signal {
            TamperSignal::Usr1 => signal_hook::consts::SIGUSR1,
            TamperSignal::Usr2 => signal_hook::consts::SIGUSR2,
        };
        let signals =
            signal_hook::iterator::Signals::new([number]).map_err(TamperSetupError::Signal)?;
        Ok(Self { signals, signal })
    }
}

impl TamperSource for SignalTrigger {
    fn name(&self) -> String {
        format!("signal {:?}", self.signal)
    }

    fn spawn(
        mut self: Box<Self>,
        notify: Notify,
        _active: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("tamper-signal".into())
            .spawn(move || {
                for signal in self.signals.forever() {
                    notify(format!("tamper signal {signal} received"));
                }
            })
    }
}

// Implements: S16
/// A case switch on a GPIO line, read through the Linux GPIO character device (uAPI v2).
/// "Active" means the case is open; `active_low` for switches that pull the line low.
pub struct GpioLine {
    request: gpiocdev::Request,
    config: GpioConfig,
    poll: Duration,
}

impl GpioLine {
    pub fn new(config: &GpioConfig, poll: Duration) -> Result<Self, TamperSetupError> {
        let error = |reason: String| TamperSetupError::Gpio {
            chip: config.chip.clone(),
            line: config.line,
            reason,
        };
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&config.chip)
            .with_consumer("warden-tamper")
            .with_line(config.line)
            .as_input();
        if config.active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| error(report(&e)))?;
        Ok(Self {
            request,
            config: config.clone(),
            poll,
        })
    }
}

impl TamperSource for GpioLine {
    fn name(&self) -> String {
        format!(
            "gpio {} line {}",
            self.config.chip.display(),
            self.config.line
        )
    }

    fn spawn(
        self: Box<Self>,
        notify: Notify,
        level: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("tamper-gpio".into())
            .spawn(move || {
                let mut active = false;
                loop {
                    let now = match self.request.value(self.config.line) {
                        Ok(value) => value == gpiocdev::line::Value::Active,
                        Err(err) => {
                            // A sensor that cannot be read any more is itself a tamper sign,
                            // and stays one.
                            level.store(true, Ordering::SeqCst);
                            notify(format!("tamper GPIO unreadable: {err}"));
                            return;
                        }
                    };
                    level.store(now, Ordering::SeqCst);
                    if now && !active {
                        notify(format!(
                            "case switch on {} line {} went active",
                            self.config.chip.display(),
                            self.config.line
                        ));
                    }
                    active = now;
                    std::thread::sleep(self.poll);
                }
            })
    }
}

/// The sources a configuration names, and the optional ones that could not be set up.
pub struct Sources {
    pub running: Vec<Box<dyn TamperSource>>,
    /// `(source, why)` for each optional source left out.
    pub unavailable: Vec<(&'static str, String)>,
}

/// Builds every source the configuration names; an optional GPIO line that cannot be opened is
/// left out and named in [`Sources::unavailable`], any other failure refuses.
pub fn from_config(config: &TamperConfig) -> Result<Sources, TamperSetupError> {
    let poll = Duration::from_millis(config.poll_interval_ms);
    let mut sources: Vec<Box<dyn TamperSource>> = Vec::new();
    if let Some(path) = &config.file {
        sources.push(Box::new(FileTrigger {
            path: path.clone(),
            poll,
        }));
    }
    if let Some(signal) = config.signal {
        sources.push(Box::new(SignalTrigger::new(signal)?));
    }
    let mut unavailable = Vec::new();
    if let Some(gpio) = &config.gpio {
        match GpioLine::new(gpio, poll) {
            Ok(line) => sources.push(Box::new(line)),
            Err(e) if gpio.optional => unavailable.push(("gpio", e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok(Sources {
        running: sources,
        unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Verifies: S18
    #[test]
    fn a_file_trigger_reports_once_when_the_file_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tamper");
        let (tx, rx) = mpsc::channel();
        let source = Box::new(FileTrigger {
            path: path.clone(),
            poll: Duration::from_millis(10),
        });
        let mut levels = TamperLevels::default();
        levels
            .spawn(source, Box::new(move |what| tx.send(what).unwrap()))
            .unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "no report before the file exists"
        );
        assert!(levels.active().is_empty());
        std::fs::write(&path, b"").unwrap();
        let what = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(what.contains("appeared"));
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "one report per appearance"
        );
        // Still there: still tamper (a reset is refused); gone: the level drops.
        assert_eq!(levels.active(), [format!("file {}", path.display())]);
        std::fs::remove_file(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !levels.active().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the level never dropped"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_missing_gpio_chip_refuses_to_start_unless_optional() {
        let mut config = TamperConfig {
            gpio: Some(GpioConfig {
                chip: "/dev/gpiochip-missing".into(),
                line: 17,
                active_low: true,
                optional: false,
            }),
            ..TamperConfig::default()
        };
        let err = from_config(&config).err().unwrap().to_string();
        assert!(
            err.contains("/dev/gpiochip-missing") && err.contains("line 17"),
            "{err}"
        );

        config.gpio.as_mut().unwrap().optional = true;
        let sources = from_config(&config).unwrap();
        assert!(sources.running.is_empty());
        assert_eq!(sources.unavailable.len(), 1);
        let (source, why) = &sources.unavailable[0];
        assert_eq!(*source, "gpio");
        assert!(why.contains("/dev/gpiochip-missing"), "{why}");
    }
}
